"""One training run on several devices at once (DDP), launched by torchrun from the train stage itself.

``train.distributed: N`` makes the train stage start itself again under ``torch.distributed.run`` with N worker
processes (one per GPU on a GPU box; on a CPU, N processes with the gloo backend, as the tests run it), so nothing
in ``dvc.yaml`` changes. Every worker iterates the same global batches (same seed, same order) and takes 1/N of
each (accelerate's ``split_batches``); MNRL gathers the documents of all workers (``gather_across_devices``), so
each query still contrasts with the whole global batch: with dropout off, the loss is the one-process loss to the
printed digit. Decisions a worker would otherwise measure on its own (precision, the step plan) are taken by
rank 0 and shared; only rank 0 writes the model, its card and curves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from embedtune.errors import EmbedtuneError


def world_size() -> int:
    """How many workers train this run together (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes what the run produces (rank 0, or the only process)."""
    return rank() == 0


def launch(processes: int, argv: Sequence[str]) -> bool:
    """Run the script ``argv`` (``sys.argv``) again under torchrun with ``processes`` workers and wait for them;
    True when it did (the caller then has nothing left to do), False when this process should train itself: one
    process asked for, or already a torchrun worker. A worker that fails fails the stage with one line."""
    if processes <= 1 or "LOCAL_RANK" in os.environ:
        return False
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               *argv]
    worker = subprocess.Popen(command)
    try:
        code = worker.wait()
    except BaseException:  # stopped (SIGTERM, Ctrl-C): torchrun stops its workers when it is stopped
        worker.terminate()
        worker.wait(60)
        raise
    if code != 0:
        raise EmbedtuneError(f"train.distributed={processes}: a torchrun worker failed (exit status {code}); "
                             "its error is above. Set train.distributed=1 to train in one process")
    return True


def share(value: Any, device: str) -> Any:
    """Rank 0's ``value`` in every worker (the value itself outside torchrun)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    if not dist.is_initialized():  # the trainer reuses this group
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every worker (nothing outside torchrun)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
