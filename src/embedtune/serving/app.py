"""``embedtune serve``: the search service over HTTP.

* ``GET /search?q=...&k=10&user=...`` ranks (``SearchService.search``); every response carries an
  ``impression_id``, and a ``Server-Timing`` header with the milliseconds spent encoding, in vector search, in
  BM25, logging and in all (a browser's developer tools show them; the load benchmark adds them up).
* ``POST /click`` ``{"impression_id": ..., "doc_id": ...}`` records a click.
* ``GET /healthz``: the process is alive (and its arms, batching counts); ``GET /readyz``: 200 when the database
  answers and the arms' index versions are in it, else 503 (probes of a load balancer or Kubernetes).
* ``GET /`` is a small search page (``static/index.html``); ``GET /docs`` the OpenAPI UI.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from embedtune.errors import EmbedtuneError
from embedtune.serving.service import MAX_K, MAX_QUERY_CHARS, SearchService

PAGE = Path(__file__).parent / "static" / "index.html"


class ClickIn(BaseModel):
    """A click on a search result."""

    impression_id: str = Field(..., max_length=100, description="the impression_id returned by /search")
    doc_id: str = Field(..., min_length=1, max_length=1000, description="id of the clicked result")


def create_app(service: SearchService):
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

    return app


class BackgroundServer:
    """The service on a free loopback port in a background thread (tests, benchmarks, simulations)."""

    def __init__(self, service: SearchService, host: str = "127.0.0.1") -> None:
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        self.service = service
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(uvicorn.Config(create_app(service), host=host, port=port, log_level="error"))
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
