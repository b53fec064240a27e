"""The LLM query generator against a small OpenAI-compatible server on loopback, started by the test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from embedtune.data.beir import Document
from embedtune.data.llm import LLMError, LLMGenerator, parse_queries

DOCS = [Document(f"d{i}", f"Title {i}", f"Body text number {i} about topic {i}.") for i in range(3)]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers chat completions; fails the first `failures` requests with 429 then 500."""

    requests: ClassVar[list[dict]] = []
    failures = 0
    status_after = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).failures > 0:
            type(self).failures -= 1
            code = 429 if type(self).failures % 2 else 500
            self.send_response(code)
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(b'{"error": "busy"}')
            return
        if type(self).status_after != 200:
            self.send_response(type(self).status_after)
            self.end_headers()
            self.wfile.write(b'{"error": "bad key"}')
            return
        title = body["messages"][0]["content"].split("Title: ")[1].split("\n")[0]
        content = f"1. what is {title.lower()}\n2. \"{title} explained\"\n\n- {title} facts and figures"
        payload = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    FakeOpenAI.requests, FakeOpenAI.failures, FakeOpenAI.status_after = [], 0, 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _generator(url: str, tmp_path: Path, **kwargs) -> LLMGenerator:
    return LLMGenerator(base_url=url, model="tiny", cache_dir=tmp_path / "cache", requests_per_second=0,
                        api_key_env="EMBEDTUNE_TEST_KEY", **kwargs)


def test_generates_parses_and_caches(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDTUNE_TEST_KEY", "sk-test")
    queries = _generator(server, tmp_path).generate(DOCS, per_document=2)
    assert [(q.doc_id, q.text) for q in queries[:2]] == [("d0", "what is title 0"), ("d0", "Title 0 explained")]
    assert len(queries) == 6 and all(q.kind == "llm" for q in queries)
    assert len(FakeOpenAI.requests) == 3
    assert FakeOpenAI.requests[0]["path"] == "/v1/chat/completions"
    assert FakeOpenAI.requests[0]["auth"] == "Bearer sk-test"
    assert FakeOpenAI.requests[0]["body"]["model"] == "tiny"
    again = _generator(server, tmp_path)
    assert again.generate(DOCS, per_document=2) == queries
    assert again.requests_made == 0 and len(FakeOpenAI.requests) == 3  # the re-run cost nothing


def test_retries_transient_errors(server: str, tmp_path: Path) -> None:
    FakeOpenAI.failures = 3
    generator = _generator(server, tmp_path, max_retries=3)
    assert len(generator.generate(DOCS[:1], per_document=3)) == 3
    assert generator.requests_made == 4


def test_gives_up_with_a_clear_error(server: str, tmp_path: Path) -> None:
    FakeOpenAI.failures = 10
    with pytest.raises(LLMError, match="failed after 2 attempts; last error: HTTP"):
        _generator(server, tmp_path, max_retries=1).generate(DOCS[:1], per_document=1)
    FakeOpenAI.failures, FakeOpenAI.status_after = 0, 401
    with pytest.raises(LLMError, match="refused the request"):
        _generator(server, tmp_path).generate(DOCS[:1], per_document=1)


def test_rate_limit(server: str, tmp_path: Path) -> None:
    import time

    generator = _generator(server, tmp_path)
    generator.requests_per_second = 10
    started = time.monotonic()
    generator.generate(DOCS, per_document=1)
    assert time.monotonic() - started >= 0.2  # three requests, at least 0.1 s apart


def test_parse_queries() -> None:
    assert parse_queries("1) first query\n* second query\nQ3: third one\nx\n1) first query", 5) == [
        "first query", "second query", "third one"]
