"""Worker processes: results in order, items streamed back, a dead or failing worker stops all of them."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from embedtune.errors import ConfigError
from embedtune.workers import Job, WorkerError, run_workers


def _answer_late(number: int, *, emit) -> dict:  # later jobs finish first
    time.sleep(0.3 * (3 - number))
    emit(("item", number))
    return {"job": number, "pid": os.getpid()}


def _die_or_wait(number: int, *, emit) -> None:
    if number == 1:
        os._exit(9)  # as the kernel's out-of-memory killer would leave it: nothing sent
    time.sleep(60)  # the other job: still working when the first dies


def _refuse(number: int, *, emit) -> None:
    raise ConfigError(f"job {number} does not like its input")


def _crash(number: int, *, emit) -> None:
    raise ZeroDivisionError("a bug")


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_jobs_queue_and_come_back_in_order(start_method: str) -> None:
    items = []
    jobs = [Job(f"job {n}", _answer_late, (n,)) for n in range(3)]
    results = run_workers(jobs, start_method=start_method, at_once=2, hint="-", on_item=lambda j, i: items.append((j, i)))
    assert [r["job"] for r in results] == [0, 1, 2]
    assert len({r["pid"] for r in results} | {os.getpid()}) == 4  # each job in a process of its own
    assert sorted(items) == [(0, ("item", 0)), (1, ("item", 1)), (2, ("item", 2))]


def test_a_worker_that_dies_stops_the_others_and_leaves_no_process() -> None:
    started = time.perf_counter()
    with pytest.raises(WorkerError, match=r"job 1 stopped \(exit code 9; .*: try one process"):
        run_workers([Job(f"job {n}", _die_or_wait, (n,)) for n in range(2)], start_method="fork", at_once=2,
                    hint="try one process")
    assert time.perf_counter() - started < 30  # the other job was stopped, not waited for
    assert not multiprocessing.active_children()


def test_a_user_error_keeps_its_one_line_and_a_bug_its_traceback() -> None:
    with pytest.raises(WorkerError, match=r"^job 0: job 0 does not like its input$"):
        run_workers([Job("job 0", _refuse, (0,))], start_method="fork", at_once=1, hint="-")
    with pytest.raises(RuntimeError, match=r"(?s)job 0 failed:\n.*ZeroDivisionError: a bug"):
        run_workers([Job("job 0", _crash, (0,))], start_method="fork", at_once=1, hint="-")
    assert not multiprocessing.active_children()
