"""Queries that arrive together are encoded together: one forward pass for a batch of concurrent requests.

A transformer's cost per query falls steeply with the batch (one matmul of 32 short queries costs a few times one
of a single query), so under load the service encodes whatever queries are waiting as one batch. The batcher
never holds a lone query back: a worker thread takes the first waiting query, gathers the others that arrive
within ``window_ms`` (up to ``max_batch``) and encodes them; queries that arrive while a batch is encoding form
the next one. At one client a batch is one query and nothing waits; at many the batches grow with the load.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

DEFAULT_MAX_BATCH = 64
DEFAULT_WINDOW_MS = 0.0  # take what is waiting; batches grow on their own while the previous one encodes


class QueryBatcher:
    """``encode(text)`` from any number of threads; one worker thread runs ``embed`` on batches of them.

    ``embed`` maps a list of texts to one unit vector per text (``embed.encoder.encode`` or an ONNX export's).
    ``batch_sizes`` counts the batches by size (the service reports it; a test checks batches form)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], *, max_batch: int = DEFAULT_MAX_BATCH,
                 window_ms: float = DEFAULT_WINDOW_MS, name: str = "query-batcher") -> None:
        if max_batch < 1 or window_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and window_ms >= 0, got {max_batch}, {window_ms}")
        self._embed, self.max_batch, self.window = embed, max_batch, window_ms / 1000
        self._waiting: queue.SimpleQueue[tuple[str, Future] | None] = queue.SimpleQueue()
        self.batch_sizes: Counter[int] = Counter()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def encode(self, text: str) -> np.ndarray:
        """The unit vector of ``text``, computed in a batch with the queries waiting beside it."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self._closed:
            raise RuntimeError("the query batcher is closed")
        futures = []
        for text in texts:
            future: Future = Future()
            self._waiting.put((text, future))
            futures.append(future)
        return [future.result() for future in futures]

    def close(self) -> None:
        """Stop the worker after the queries already waiting are answered."""
        if not self._closed:
            self._closed = True
            self._waiting.put(None)
            self._worker.join(30)

    def _gather(self, first: tuple[str, Future]) -> tuple[list[tuple[str, Future]], bool]:
        """``first`` and the queries waiting (or arriving within the window) beside it; True when told to stop."""
        batch = [first]
        deadline = time.monotonic() + self.window
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._waiting.get(timeout=left) if left > 0 else self._waiting.get_nowait()
            except queue.Empty:
                return batch, False
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._waiting.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self.batch_sizes[len(batch)] += 1
            try:
                vectors = self._embed([text for text, _ in batch])
            except BaseException as error:  # noqa: BLE001 - every waiting request gets the encoder's error
                for _, future in batch:
                    future.set_exception(error)
                continue
            for (_, future), vector in zip(batch, vectors):
                future.set_result(vector)
        while True:  # a query put after ``close`` began is refused rather than left waiting
            try:
                item = self._waiting.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(RuntimeError("the query batcher is closed"))
