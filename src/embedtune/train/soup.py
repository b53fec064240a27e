"""A uniform model soup (Wortsman et al., 2022): several training runs that differ only in their seed, saved as
the element-wise mean of their weights, with the runs trained side by side where the cores allow."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune.runtime import prepare_worker, release_freed_memory
from embedtune.train.budget import StepPlan, describe, plan_training
from embedtune.train.checkpoints import ResumeArea, run_key
from embedtune.train.config import TrainConfig
from embedtune.train.distributed import barrier, is_main, share, world_size
from embedtune.train.precision import choose_train_precision
from embedtune.train.trainer import train_model
from embedtune.workers import Job, cpu_cores, run_workers

if TYPE_CHECKING:
    from datasets import Dataset as HFDataset

log = logging.getLogger(__name__)

# What the model card records of the step plan: it decides the weights. The measured step time it came from goes to
# the timings file only (``TIMING_STATS``).
BUDGET_STATS = ("steps", "full_steps", "limited_by", "examples", "examples_seen", "passes", "share_seen")

SOUP_SEED_STEP = 1000  # run k of a soup trains with seed + (k - 1) x this
MAX_SOUP_PROCESSES = 2  # ``auto`` never trains more runs at once: more than two was not measured
SOUP_PROCESS_MEMORY_GB = 6.0  # peak resident memory of one default training run (MiniLM, batch 16, 256 tokens)


def available_memory_gb() -> float | None:
    """The memory the kernel says new work can use (``MemAvailable`` in /proc/meminfo), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def resolve_soup_processes(config: TrainConfig, device: str) -> int:
    """How many of a soup's runs train at once (``train.soup_processes``).

    ``auto``: on a CPU with a core for each, two runs at a time when the soup has an even number of runs (an odd
    one left over would train alone on half the cores) and the memory available holds two runs
    (``SOUP_PROCESS_MEMORY_GB`` each); on a GPU, or where processes cannot be spawned, one after another. A
    number is taken as given (at most ``soup``). Why side by side: a training step's non-matmul half (dropout
    masks, softmax, optimizer) leaves a second thread idle much of the time, so two one-thread runs keep two
    cores busier than one two-thread run after the other.
    """
    if config.soup <= 1 or world_size() > 1:  # under DDP every worker trains every run, one run at a time
        return 1
    if config.soup_processes != "auto":
        return min(int(config.soup_processes), config.soup)
    if device != "cpu" or "spawn" not in multiprocessing.get_all_start_methods():
        return 1
    processes = min(MAX_SOUP_PROCESSES, config.soup, cpu_cores())
    while config.soup % processes:
        processes -= 1
    available = available_memory_gb()
    if processes > 1 and available is not None and available < processes * SOUP_PROCESS_MEMORY_GB:
        log.info("train.soup_processes=auto: %.1f GB of memory available, under %.0f GB for %d runs side by side: "
                 "training them one after another", available, processes * SOUP_PROCESS_MEMORY_GB, processes)
        return 1
    return processes


def training_seconds(intervals: Sequence[tuple[float, float]]) -> float:
    """Seconds during which at least one of the runs was training: the length of the union of their (start, end)
    wall-clock intervals. One after another it is their sum; side by side, spawning, loading and saving the models
    are left out as they are for a single run."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def soup_threads(processes: int) -> int:
    """Threads each of ``processes`` side-by-side training runs gets: an equal share of the cores, at least one."""
    return max(1, cpu_cores() // processes)


def average_weights(model: Any, snapshots: Sequence[Mapping[str, Any]]) -> int:
    """Load the element-wise mean of ``snapshots`` (state dicts of ``model``) into ``model``; tensors that are
    not floating point (e.g. position ids) keep the model's own. Returns how many tensors were averaged."""
    import torch

    state = model.state_dict()
    averaged = 0
    for name, tensor in state.items():
        if tensor.is_floating_point():
            mean = torch.stack([snapshot[name].to(torch.float32) for snapshot in snapshots]).mean(dim=0)
            state[name] = mean.to(dtype=tensor.dtype, device=tensor.device)
            averaged += 1
    model.load_state_dict(state)
    return averaged


def _soup_run(*run: Any, emit: Any = None, **options: Any) -> dict[str, Any]:
    """In a spawned worker: one run of the soup (``train_model``)."""
    return train_model(*run, **options)


def _train_runs(runs: list[tuple], options: dict[str, Any], processes: int) -> list[dict[str, Any]]:
    """Every run's ``train_model`` statistics: one after another in this process, or ``processes`` at a time,
    each in a spawned process with its share of the cores (only the first shows a progress bar)."""
    if processes == 1:
        stats = []
        for k, run in enumerate(runs, start=1):
            log.info("train.soup=%d: run %d of %d (seed %d)", len(runs), k, len(runs), run[2].seed)
            stats.append(train_model(*run, **options))
        return stats
    threads = soup_threads(processes)
    jobs = [Job(f"soup run {k + 1} of {len(runs)}", _soup_run, run,
                {**options, "threads": threads, "show_progress": k == 0}) for k, run in enumerate(runs)]
    return run_workers(jobs, start_method="spawn", at_once=processes, setup=prepare_worker,
                       hint="set train.soup_processes=1 to train the runs one after another")


def train_soup(
    base_model: str,
    dataset: HFDataset,
    config: TrainConfig,
    output_dir: Path,
    live_dir: Path,
    checkpoints: Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``train_model`` ``config.soup`` times and save the mean of the runs' weights in ``output_dir`` (with one
    run, exactly ``train_model``), in the precision ``choose_train_precision`` picks for the threads each run
    gets, for the steps the budget allows (``budget.plan_training``). Returns the first run's statistics with
    ``precision`` (the one trained in), ``precision_choice`` (how it was chosen, with the probe's timings),
    ``budget`` (the steps, what limited them, the share of the data seen) and ``step_plan`` (the same with the
    measured step time); for a soup also ``train_seconds`` for all runs and ``soup``: each run's seed, final and
    mean loss, and how many trained at once.

    Run 1 writes its curves to ``live_dir`` as usual; run k's go beside them (``plots/metrics/soup_run<k>/``)
    and the dvclive summary gains ``soup`` (runs, processes), so `dvc plots` and `dvc metrics` show every run.
    Runs k >= 2 train in a scratch directory inside ``output_dir`` (not in /tmp: a model is ~90 MB), so whatever
    removes an unfinished ``output_dir`` (``atomic_directory``, also after a kill -9) removes their runs with it.
    With ``checkpoints`` (``checkpoints.checkpoint_root`` of the output) every run saves a checkpoint every
    ``train.checkpoint_minutes`` there, a stopped run of the same setup resumes from its last one, and they are
    removed once every run has finished.
    """
    from embedtune.models import pick_device

    device = pick_device(options.get("device", "auto"))
    area = None
    if checkpoints is not None and config.checkpoint_minutes is not None:
        key = run_key(base_model, dataset, config, device=device, max_seq_length=options.get("max_seq_length"))
        area = ResumeArea.open(checkpoints, key) if is_main() else ResumeArea(Path(checkpoints), key)
    # under DDP rank 0 measures and decides, every worker trains by its decision (distributed.share)
    decided = _plan(base_model, dataset, config, device, area, options) if is_main() else None
    processes, precision, choice, plan = share(decided, device)
    config = replace(config, precision=precision)
    log.info("%s", describe(plan, config))
    options = {**options, "steps": plan.steps, "checkpoints": area.path if area else None}
    if config.soup == 1:
        stats = train_model(base_model, dataset, config, output_dir, live_dir, **options)
    else:
        stats = _soup(base_model, dataset, config, output_dir, live_dir, processes, options)
    barrier()
    if area and is_main():
        area.remove()
    summary = plan.summary()
    return {**stats, "precision": config.precision, "precision_choice": choice,
            "budget": {k: summary[k] for k in BUDGET_STATS}, "step_plan": summary}


def _plan(base_model: str, dataset: HFDataset, config: TrainConfig, device: str, area: ResumeArea | None,
          options: dict[str, Any]) -> tuple[int, str, dict[str, Any], StepPlan]:
    """How many runs train at once, the precision (and how it was chosen) and the step plan: measured here, or
    the ones a stopped run of the same setup saved in ``area``, so that the resumed run is the stopped one."""
    saved = area.saved_plan() if area else None
    if saved:
        log.info("resuming a stopped training run from its checkpoints in %s (%s, %d steps a run, %d process(es))",
                 area.path, saved["precision"], saved["step_plan"]["steps"], saved["processes"])
        return saved["processes"], saved["precision"], saved["precision_choice"], StepPlan(**saved["step_plan"])
    processes = resolve_soup_processes(config, device)
    threads = soup_threads(processes) if processes > 1 else options.get("threads") or cpu_cores() // world_size()
    precision, choice = choose_train_precision(base_model, dataset, config, device, threads=threads,
                                               max_seq_length=options.get("max_seq_length"))
    plan = plan_training(base_model, dataset, replace(config, precision=precision), device, threads=threads,
                         runs_in_sequence=math.ceil(config.soup / processes),
                         max_seq_length=options.get("max_seq_length"), measured=choice.get("step_seconds"))
    release_freed_memory()  # the probes' peak, before the runs train (here or in processes of their own)
    if area:
        area.save_plan({"processes": processes, "precision": precision, "precision_choice": choice,
                        "step_plan": asdict(plan)})
    return processes, precision, choice, plan


def _soup(base_model: str, dataset: HFDataset, config: TrainConfig, output_dir: Path, live_dir: Path,
          processes: int, options: dict[str, Any]) -> dict[str, Any]:
    """``train_soup`` for two or more runs, ``processes`` of them at a time."""
    from embedtune.models import load_model

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".soup.", dir=output_dir) as scratch:
        runs = [(base_model, dataset, replace(config, seed=config.seed + SOUP_SEED_STEP * (k - 1)),
                 *((output_dir, live_dir) if k == 1 else (Path(scratch) / f"run{k}", Path(scratch) / f"live{k}")))
                for k in range(1, config.soup + 1)]
        log.info("train.soup=%d: seeds %s, %s", config.soup, ", ".join(str(run[2].seed) for run in runs),
                 "one after another" if processes == 1 else
                 f"{processes} at a time in their own processes, {soup_threads(processes)} thread(s) each")
        stats = _train_runs(runs, options, processes)
        if not is_main():  # a DDP worker other than rank 0: rank 0 averages and saves
            return {**stats[0], "soup": [], "soup_processes": processes}
        for k, run in enumerate(runs[1:], start=2):
            shutil.copytree(run[4] / "plots" / "metrics" / "train",
                            Path(live_dir) / "plots" / "metrics" / f"soup_run{k}", dirs_exist_ok=True)
        model = load_model(str(output_dir), device="cpu")
        average_weights(model, [model.state_dict()] + [load_model(str(run[3]), device="cpu").state_dict()
                                                       for run in runs[1:]])
        model.save(str(output_dir))
    log.info("saved weights = mean of %d runs' (train.soup)", config.soup)
    summary_path = Path(live_dir) / "metrics.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["soup"] = {"runs": config.soup, "processes": processes}
    summary_path.write_text(json.dumps(summary, indent=4) + "\n", encoding="utf-8")
    runs_stats = [{"seed": run[2].seed, "final_loss": s["final_loss"], "mean_loss": s["mean_loss"]}
                  for run, s in zip(runs, stats)]
    seconds = training_seconds([tuple(s["train_interval"]) for s in stats])
    return {**stats[0], "train_seconds": round(seconds, 1), "soup": runs_stats, "soup_processes": processes}
