"""One Hydra job: validate, run the task, write results.json (ok or failed, never half-written).

In multirun a failing job is recorded as failed with its reason and the sweep goes on; a single run that
fails exits non-zero (2 with a one-line message for bad input).
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hopbench.app.report import print_summary
from hopbench.app.settings import settings_from_config
from hopbench.app.tasks import TASKS
from hopbench.app.tracking import Recorder, config_hash, versions, write_json
from hopbench.core.system import resolve_device
from hopbench.errors import ConfigError

__all__ = ["explicit_keys", "run_job"]

log = logging.getLogger("hopbench")


def explicit_keys(overrides: list[str]) -> set[str]:
    """Top-level keys given on the command line (``n_patterns=10`` → {"n_patterns"})."""
    return {o.split("=", 1)[0].lstrip("+~").split(".")[0] for o in overrides if "=" in o}


def _device_name(device: str) -> str:
    try:
        dev = resolve_device(device)
    except ConfigError:
        return str(device)
    return f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "cpu"


def run_job(cfg: DictConfig) -> dict[str, Any]:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    config = OmegaConf.to_container(cfg, resolve=True)
    results: dict[str, Any] = {
        "status": "failed", "error": None, "task": cfg.task.get("name"), "config": config,
        "config_hash": config_hash(config), "overrides": list(hc.overrides.task), "device": _device_name(cfg.device),
        "versions": versions(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    start = time.perf_counter()
    recorder: Recorder | None = None
    failure: BaseException | None = None
    try:
        settings = settings_from_config(cfg, explicit=explicit_keys(list(hc.overrides.task)))
        n, p = settings.n_neurons, settings.system["n_patterns"]
        results["system"] = {"n_neurons": n, "n_patterns": p, "load": p / n}
        results["notes"] = settings.notes
        for note in settings.notes:
            log.warning(note)
        group = cfg.experiment_name if not multirun else f"{cfg.experiment_name}/{Path(hc.sweep.dir).name}"
        job_type = "compare" if settings.compare else settings.model
        recorder = Recorder(out_dir, settings.logger, config=config, group=group, job_type=job_type,
                            name=f"{cfg.experiment_name}-{settings.task}-{hc.job.num if multirun else 'run'}")
        results.update(TASKS.get(settings.task)(settings, recorder))
        results["status"] = "ok"
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
        print_summary([results], title=f"{results['task']} — {path.parent}")
        return results
    log.error("job failed: %s (results: %s)", results["error"], path)
    if multirun:
        print(f"hopbench: job {hc.job.num} failed: {results['error']}", file=sys.stderr)
        return results
    if isinstance(failure, ConfigError):
        print(f"hopbench: error: {failure}", file=sys.stderr)
        raise SystemExit(2)
    raise failure
