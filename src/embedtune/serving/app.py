"""``embedtune serve``: the search service over HTTP.

* ``GET /search?q=...&k=10&user=...`` ranks (``SearchService.search``); every response carries an
  ``impression_id``, and a ``Server-Timing`` header with the milliseconds spent encoding, in vector search, in
  BM25, logging and in all (a browser's developer tools show them; the load benchmark adds them up).
* ``POST /click`` ``{"impression_id": ..., "doc_id": ...}`` records a click.
* ``GET /healthz``: the process is alive (and its arms, batching counts); ``GET /readyz``: 200 when the database
  answers and the arms' index versions are in it, else 503 (probes of a load balancer or Kubernetes).
* ``GET /judge`` is the judging page; ``GET /judge/next``, ``POST /judge/queries`` and ``POST /judge/grade``
  (``serving.judging``) need ``Authorization: Bearer $EMBEDTUNE_JUDGE_TOKEN``.
* ``GET /`` is a small search page (``static/index.html``); ``GET /docs`` the OpenAPI UI.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from embedtune.errors import EmbedtuneError
from embedtune.serving.service import MAX_K, MAX_QUERY_CHARS, SearchService

PAGE = Path(__file__).parent / "static" / "index.html"


JUDGE_PAGE = Path(__file__).parent / "static" / "judge.html"
JUDGE_TOKEN_ENV = "EMBEDTUNE_JUDGE_TOKEN"


class JudgementIn(BaseModel):
    """One graded judgement of a pooled document (grade null: skipped)."""

    request_id: str = Field(..., max_length=100, description="a new UUID per judgement: a replay stores nothing")
    judge: str = Field(..., min_length=1, max_length=200)
    query_id: str = Field(..., min_length=1, max_length=200)
    doc_id: str = Field(..., min_length=1, max_length=1000)
    grade: int | None = Field(..., description="2 relevant, 1 partly relevant, 0 not relevant, null: skip")
    note: str = Field("", max_length=2000)


class QueryIn(BaseModel):
    text: str = Field(..., min_length=1, max_length=1000, description="a query to judge")


class ClickIn(BaseModel):
    """A click on a search result."""

    impression_id: str = Field(..., max_length=100, description="the impression_id returned by /search")
    doc_id: str = Field(..., min_length=1, max_length=1000, description="id of the clicked result")


def create_app(service: SearchService, judge_token: str | None = None):
    """The app over ``service``. ``judge_token`` (default: ``EMBEDTUNE_JUDGE_TOKEN``) opens the judging routes
    to requests bearing it (``Authorization: Bearer <token>``); without one they answer 403."""
    import os

    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="embedtune search", version="1", description=__doc__)

    @app.exception_handler(EmbedtuneError)
    async def _user_error(request: Request, exc: EmbedtuneError):
        return JSONResponse(status_code=getattr(exc, "status", 400), content={"detail": str(exc)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True, "experiment": service.experiment.name, "mode": service.experiment.mode,
                "arms": {name: arm.version for name, arm in service.arms.items()},
                "query_batches": service.query_batches()}

    @app.get("/readyz", response_model=None)
    def ready():
        """200 when searches can be answered (database reachable, the arms' index versions in it), else 503:
        for a load balancer's or Kubernetes' readiness probe (``/healthz``: the process is alive)."""
        state = service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/search", response_model=None)
    def search(q: str = Query(..., max_length=MAX_QUERY_CHARS * 2), k: int = Query(10, ge=1, le=MAX_K),
               user: str | None = Query(None, max_length=200)):
        timings: dict[str, float] = {}
        result = service.search(q, k, user, timings=timings)
        return JSONResponse(result, headers={
            "Server-Timing": ", ".join(f"{name};dur={ms:.2f}" for name, ms in timings.items())})

    @app.post("/click")
    def click(body: ClickIn) -> dict:
        return service.click(body.impression_id, body.doc_id)

    _judging_routes(app, service, judge_token if judge_token is not None else os.environ.get(JUDGE_TOKEN_ENV, ""))
    return app


def _judging_routes(app, service: SearchService, token: str) -> None:
    """The judging page and its API, open to requests bearing ``token`` (none: every request is refused)."""
    import hmac

    from fastapi import Depends, Header, HTTPException, Query
    from fastapi.responses import HTMLResponse

    def judging_allowed(authorization: str | None = Header(None)) -> None:
        if not token:
            raise HTTPException(403, f"judging is off: start the service with {JUDGE_TOKEN_ENV} set")
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "judging needs the header Authorization: Bearer <token>")
        if not hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), token.encode()):
            raise HTTPException(403, "wrong judging token")

    @app.get("/judge", response_class=HTMLResponse, include_in_schema=False)
    def judge_page() -> str:
        return JUDGE_PAGE.read_text(encoding="utf-8")

    @app.get("/judge/next", dependencies=[Depends(judging_allowed)])
    def judge_next(judge: str = Query(..., min_length=1, max_length=200)) -> dict:
        """The next query for this judge, with its blind candidate pool and the judge's progress."""
        return service.judge_next(judge)

    @app.post("/judge/queries", dependencies=[Depends(judging_allowed)])
    def judge_add(body: QueryIn) -> dict:
        """Queue a query typed by a judge."""
        return service.judge_add(body.text)

    @app.post("/judge/grade", dependencies=[Depends(judging_allowed)])
    def judge_grade(body: JudgementIn) -> dict:
        """Append one judgement (a replayed request_id: 409, nothing stored)."""
        return service.judge_record(**body.model_dump())


class BackgroundServer:
    """The service on a free loopback port in a background thread (tests, benchmarks, simulations)."""

    def __init__(self, service: SearchService, host: str = "127.0.0.1", judge_token: str | None = None) -> None:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        self.service = service
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(create_app(service, judge_token), host=host, port=port, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the search service did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self.service.close()
