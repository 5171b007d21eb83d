"""One Hydra job: build the checked Job, run its task, write results.json (ok, failed or interrupted; never
half-written) and return the sweeper's objective.

In multirun a failing job is recorded as failed with its reason and the sweep goes on (the sweep's end lists
the failures and the command exits non-zero); a single run that fails exits non-zero (2 with a one-line
message for bad input). The job's story goes through ``logging``, so Hydra's per-job ``cli.log`` (and a
launcher's logs) hold it, not only a terminal. A job that a launcher runs beside others takes its share of the
cores (``threads=auto``); a job already complete in its folder is not run again (``resume``).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hopbench import threads
from hopbench.app.compose import OPTION_KEYS, explicit_keys, job_from_config
from hopbench.app.job import Job
from hopbench.app.report import summary_text, warnings_for
from hopbench.app.tracking import (
    Recorder,
    completed,
    config_hash,
    flat_config,
    run_id,
    versions,
    wandb_group,
    write_json,
)
from hopbench.core.system import resolve_device
from hopbench.errors import ConfigError

__all__ = ["choices", "job_threads", "launcher_cores", "objective", "run_job"]

log = logging.getLogger("hopbench")


def _device_name(device: str, n_neurons: object) -> str:
    try:
        dev = resolve_device(device, n_neurons if isinstance(n_neurons, int) else None)
    except ConfigError:
        return str(device)
    return f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "cpu"


def choices(job: Job) -> dict[str, str]:
    """The option chosen in every config group, read off the built objects."""
    spec = job.system
    model = spec.model_spec
    return {"model": spec.model.name, "activation": spec.activation.name, "strategy": model.strategy.name,
            "energy": model.energy.name, "weights": spec.weights.name, "dataset": spec.dataset.name,
            "cue": job.cue.name, "solver": job.solver.method, "task": job.task.name, "logger": job.logger.name}


def _run_name(cfg: DictConfig, overrides: list[str], task: str) -> str:
    """experiment, task, then the overrides that make this run what it is (seed last): unique in a sweep."""
    parts = sorted((o for o in overrides if not o.startswith(("hydra", "logger", "experiment=", "experiment_name="))),
                   key=lambda o: (o.startswith("seed="), o))
    return "-".join([cfg.experiment_name, task, *parts])[:128]


def objective(results: dict, path: str | None) -> float | None:
    """The value at ``path`` in ``results`` (e.g. metrics.retrieval_accuracy) for a sweeper to optimise: None
    without an objective, NaN (a failed trial for Optuna) when the run has no number there."""
    if not path:
        return None
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else math.nan


def job_threads(job: Job, setting: int | str, launcher: DictConfig | None) -> int:
    """The job's thread budget under its launcher: ``threads=auto`` gets at most the job's share of the cores
    (:func:`launcher_cores`), so that jobs × threads ≤ cores; a number is kept (with a warning when the launcher's
    jobs together would ask for more threads than there are cores)."""
    share = launcher_cores(launcher) if launcher is not None else None
    if share is None:
        return job.threads
    if setting == "auto":
        return min(job.threads, share)
    if job.threads > share:
        log.warning("threads=%s: the launcher runs jobs side by side with about %d core(s) each; %s threads per job "
                    "oversubscribe the cores (threads=auto takes the share)", setting, share, setting)
    return job.threads


def launcher_cores(launcher: DictConfig) -> int | None:
    """The cores one job of a launcher may use (None: every core of the process): joblib runs ``n_jobs`` jobs at
    once on this machine (−1 one per core, −k cores + 1 − k), so each gets cores // n_jobs; submitit's jobs get
    the ``cpus_per_task`` they asked for."""
    cores = threads.available_cores()
    n_jobs = launcher.get("n_jobs")
    if isinstance(n_jobs, int) and n_jobs != 0:
        side_by_side = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // side_by_side)
    cpus = launcher.get("cpus_per_task")
    return int(cpus) if isinstance(cpus, int) and cpus > 0 else None


def _tags(job: Job, picked: dict[str, str]) -> list[str]:
    """wandb tags: the task and the options that define the system (``model=modified``, ``activation=tanh``)."""
    keys = ("task", "model", "activation", "strategy", "energy", "weights", "dataset")
    return [f"{k}={picked[k]}" for k in keys if k in picked] + (["compare"] if job.compare else [])


def run_job(cfg: DictConfig) -> float | None:
    """Run the job of the composed ``cfg`` inside Hydra; returns the configured objective (or None).

    With ``resume`` (``true``; in a multirun unless ``false``) a job whose folder already holds results.json
    with status ok and the same ``config_hash`` is not run again: its objective is read back."""
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    config = OmegaConf.to_container(cfg, resolve=True)
    digest = config_hash(config)
    if cfg.resume or (multirun and cfg.resume is None):
        done = completed(out_dir, digest)
        if done is not None:
            log.info("resume: %s already holds this job's results (config_hash %s): not run again", out_dir, digest)
            return objective(done, cfg.objective)
    results: dict[str, Any] = {
        "status": "failed", "error": None, "task": None, "config": config, "config_hash": digest,
        "overrides": overrides, "device": _device_name(cfg.device, cfg.get("n_neurons")), "versions": versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "choices": {k: str(v) for k, v in hc.runtime.choices.items() if k in OPTION_KEYS},
    }
    start = time.perf_counter()
    recorder: Recorder | None = None
    failure: BaseException | None = None
    try:
        job = job_from_config(cfg, explicit=explicit_keys(overrides))
        job = replace(job, threads=job_threads(job, cfg.threads, hc.get("launcher")))
        results["task"], results["choices"] = job.task.name, choices(job)
        n, p = job.system.n_neurons, job.system.n_patterns
        results["system"] = {"n_neurons": n, "n_patterns": p, "load": p / n, "threads": job.threads}
        results["notes"] = list(job.notes)
        for note in job.notes:
            log.warning(note)
        group = wandb_group(cfg.experiment_name, Path(hc.sweep.dir) if multirun else None)
        job_type = "compare" if job.compare else job.model.name
        recorder = Recorder(out_dir, job.logger, config=flat_config(config, results["choices"]), group=group,
                            job_type=job_type, name=_run_name(cfg, overrides, job.task.name),
                            run_id=run_id(digest, out_dir), tags=_tags(job, results["choices"]))
        log.info("%s: task=%s, %s, N=%d, P=%d, %d thread(s) -> %s", cfg.experiment_name, job.task.name,
                 ", ".join(f"{k}={v}" for k, v in results["choices"].items() if k not in ("task", "logger")), n, p,
                 job.threads, out_dir)
        with job.thread_budget():
            results.update(job.task.run(job, recorder))
        results["warnings"] = warnings_for(results)
        results["status"] = "ok"
    except KeyboardInterrupt as err:
        failure = err
        results["status"], results["error"] = "interrupted", "KeyboardInterrupt: the job was interrupted"
    except Exception as err:  # recorded, then re-raised for single runs
        failure = err
        results["error"] = f"{type(err).__name__}: {err}"
        if not isinstance(err, ConfigError):
            results["traceback"] = traceback.format_exc()
    finally:
        results["timing"] = {"total_s": time.perf_counter() - start, **results.get("timing", {})}
        results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if recorder is not None:
            path = recorder.finish(results)
        else:
            path = out_dir / "results.json"
            write_json(path, results)
    if failure is None:
        log.info(summary_text([results], title=f"{results['task']} — {path.parent}"))
        for warning in results["warnings"]:
            log.warning("warning: %s", warning)
        return objective(results, cfg.objective)
    log.error("job %s: %s (results: %s)", results["status"], results["error"], path)
    if isinstance(failure, KeyboardInterrupt) or not multirun:
        if isinstance(failure, ConfigError):
            print(f"hopbench: error: {failure}", file=sys.stderr)
            raise SystemExit(2) from None
        raise failure
    return objective(results, cfg.objective)
