"""Synthetic queries from a large language model behind any OpenAI-compatible endpoint.

* ``POST {base_url}/chat/completions`` with the model name; the API key is read from an environment variable
  (never a parameter), so nothing secret is committed.
* Retries with exponential backoff on timeouts, connection errors, 429 and 5xx (honouring ``Retry-After``).
* A rate limit (requests per second) so a shared endpoint is not flooded.
* A response cache keyed by a hash of (model, prompt) in SQLite: a re-run, or a resumed run after a crash,
  costs nothing for the documents already done.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedtune.data.beir import Document
from embedtune.data.synthetic import SyntheticQuery
from embedtune.errors import ConfigError, EmbedtuneError

PROMPT = (
    "You write search queries. Read the document below and write {n} different short queries (3 to 20 words) "
    "that a person would type into a search engine when this document is the answer they need. Do not copy "
    "sentences from the document. Reply with one query per line and nothing else.\n\n"
    "Title: {title}\nDocument: {text}"
)
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d*[:.)])\s*")


class LLMError(EmbedtuneError):
    """The endpoint could not be used (after retries)."""


class ResponseCache:
    """(model, prompt) -> response text, in SQLite, safe to share between runs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "responses.sqlite", check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT)")
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, prompt: str) -> str:
        return hashlib.sha256(json.dumps([model, prompt]).encode("utf-8")).hexdigest()

    def get(self, model: str, prompt: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (self.key(model, prompt),)).fetchone()
        return row[0] if row else None

    def put(self, model: str, prompt: str, response: str) -> None:
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (self.key(model, prompt), model, response))


def parse_queries(response: str, limit: int) -> list[str]:
    """One query per line; strips numbering, bullets and quotes; drops empties and duplicates."""
    out: list[str] = []
    for line in response.splitlines():
        text = _NUMBERING.sub("", line).strip().strip('"').strip("'").strip()
        if len(text.split()) >= 2 and text not in out:
            out.append(text)
    return out[:limit]


@dataclass
class LLMGenerator:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    requests_per_second: float = 2.0
    max_retries: int = 5
    timeout_s: float = 60.0
    cache_dir: Path = Path(".cache/llm")
    max_document_chars: int = 2000
    temperature: float = 0.7
    name: str = "llm"
    requests_made: int = field(default=0, init=False)
    _last_request: float = field(default=0.0, init=False)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LLMGenerator:
        if not params.get("base_url") or not params.get("model"):
            raise ConfigError("synthetic.llm.base_url and synthetic.llm.model are required for generator 'llm'")
        return cls(
            base_url=str(params["base_url"]).rstrip("/"),
            model=str(params["model"]),
            api_key_env=params.get("api_key_env") or "OPENAI_API_KEY",
            requests_per_second=float(params.get("requests_per_second") or 2.0),
            max_retries=int(params.get("max_retries", 5)),
            timeout_s=float(params.get("timeout_s") or 60.0),
            cache_dir=Path(params.get("cache_dir") or ".cache/llm"),
        )

    def prompt(self, doc: Document, n: int) -> str:
        return PROMPT.format(n=n, title=doc.title or "(none)", text=doc.text[: self.max_document_chars])

    def generate(self, documents: Sequence[Document], per_document: int) -> list[SyntheticQuery]:
        from tqdm import tqdm

        cache = ResponseCache(self.cache_dir)
        out: list[SyntheticQuery] = []
        for doc in tqdm(documents, desc="LLM queries", unit="doc"):
            prompt = self.prompt(doc, per_document)
            response = cache.get(self.model, prompt)
            if response is None:
                response = self._complete(prompt)
                cache.put(self.model, prompt, response)
            out += [SyntheticQuery(doc.id, q, "llm") for q in parse_queries(response, per_document)]
        return out

    def _complete(self, prompt: str) -> str:
        import requests

        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.temperature}
        url = f"{self.base_url}/chat/completions"
        delay, last_error = 1.0, ""
        for attempt in range(self.max_retries + 1):
            self._throttle()
            try:
                self.requests_made += 1
                reply = requests.post(url, json=body, headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if reply.status_code == 200:
                    try:
                        return reply.json()["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        raise LLMError(f"{url} answered 200 but not in the chat-completions format: "
                                       f"{reply.text[:200]!r}") from None
                last_error = f"HTTP {reply.status_code}: {reply.text[:200]}"
                if reply.status_code not in (408, 409, 429) and reply.status_code < 500:
                    raise LLMError(f"{url} refused the request ({last_error})")
                retry_after = reply.headers.get("Retry-After")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = max(delay, float(retry_after))
            if attempt < self.max_retries:
                time.sleep(delay)
                delay = min(delay * 2, 60.0)
        raise LLMError(f"{url} failed after {self.max_retries + 1} attempts; last error: {last_error}")

    def _throttle(self) -> None:
        if self.requests_per_second <= 0:
            return
        wait = self._last_request + 1.0 / self.requests_per_second - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()
