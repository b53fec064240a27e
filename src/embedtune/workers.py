"""Worker processes that report back over a pipe, for work that one Python process cannot spread over the cores.

Two parts of the pipeline use it: corpus encoding (forked processes that share the loaded model and stream back
each batch's vectors) and a model soup's training runs side by side (spawned processes, one result each). Both
need the same care: a worker that fails sends its error back; one that dies (killed, out of memory) is noticed
at once by its closed pipe; the others are stopped and nothing outlives the stage (``exit_with_parent``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from embedtune.errors import EmbedtuneError


class WorkerError(EmbedtuneError):
    """A worker process stopped without finishing, or failed with a user error."""


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask; os.cpu_count() where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def exit_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so a worker
    does not outlive a stage that was killed."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, int(sig), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


@dataclass(frozen=True)
class Job:
    """One worker's work: ``target(*args, emit=send)`` runs in the worker; ``emit(item)`` streams an item back
    (``run_workers``' ``on_item``), the return value is the job's result. ``name`` names it in errors."""

    name: str
    target: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _worker_main(connection, job: Job, setup: Callable[[], None] | None) -> None:
    """A worker process's whole life: run the job, send its items and its result (or its error) back."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the stage's handler (run_stage) is the parent's business
    exit_with_parent(signal.SIGTERM)
    try:
        if setup is not None:
            setup()
        result = job.target(*job.args, **job.kwargs, emit=lambda item: connection.send(("item", item)))
        connection.send(("done", result))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group: the parent stops the work and says so
    except EmbedtuneError as exc:  # a user error keeps its one clear line
        connection.send(("user-error", str(exc)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        with contextlib.suppress(OSError):  # the parent may be gone already
            connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_workers(
    jobs: Sequence[Job],
    *,
    start_method: str,
    at_once: int,
    hint: str,
    on_item: Callable[[int, Any], None] | None = None,
    setup: Callable[[], None] | None = None,
) -> list[Any]:
    """Run ``jobs`` in ``at_once`` worker processes at a time and return their results in order.

    ``start_method``: ``fork`` shares the parent's memory (a loaded model) copy-on-write; ``spawn`` starts a
    fresh interpreter (no inherited OpenMP threads; ``target`` and ``args`` must pickle) and runs ``setup``
    first. ``on_item(job index, item)`` receives what a job emits, in the parent, as it arrives. A job that dies
    or fails stops every other one and raises, naming it; ``hint`` says what the user can do about a dead one.
    """
    context = multiprocessing.get_context(start_method)
    results: list[Any] = [None] * len(jobs)
    waiting, pending, workers = list(range(len(jobs))), {}, []
    try:
        while waiting or pending:
            while waiting and len(pending) < at_once:
                number = waiting.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                worker = context.Process(target=_worker_main, args=(sender, jobs[number], setup),
                                         name=jobs[number].name, daemon=True)
                worker.start()
                sender.close()
                workers.append(worker)
                pending[receiver] = (number, worker)
            for receiver in multiprocessing.connection.wait(list(pending)):
                number, worker = pending[receiver]
                if _receive(receiver, worker, jobs[number].name, hint, on_item, number, results):
                    del pending[receiver]
                    receiver.close()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    return results


def _receive(receiver, worker, name: str, hint: str, on_item, number: int, results: list[Any]) -> bool:
    """Handle one message of job ``number``; True when the job is done."""
    try:
        kind, payload = receiver.recv()
    except EOFError:
        worker.join(timeout=5)
        raise WorkerError(f"{name} stopped (exit code {worker.exitcode}; -9 is usually the system running out of "
                          f"memory): {hint}") from None
    if kind == "item":
        if on_item is not None:
            on_item(number, payload)
        return False
    if kind == "user-error":
        raise WorkerError(f"{name}: {payload}")
    if kind == "error":
        raise RuntimeError(f"{name} failed:\n{payload}")
    results[number] = payload
    return True
