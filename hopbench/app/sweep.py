"""The sweep as a whole: job folders named by what they run, resume without recompute, progress, and a summary.

- :func:`job_dirname` names a job's folder by its overrides (the swept keys, seed last), short enough for any file
  system; ``conf/config.yaml`` sets ``hydra.sweep.subdir`` to it through the ``hopbench.job_dir`` resolver.
- :func:`resumable_batches` is the work of ``hydra/sweeper=resumable`` (the plugin
  ``hydra_plugins.hopbench_resumable_sweeper``): Hydra's basic sweeper (lists, ``range()``, ``glob()``) that keeps
  only the swept keys in folder names and, with ``resume`` (on in a multirun unless ``resume=false``), launches
  only the jobs whose folder in ``hydra.sweep.dir`` does not already hold results.json with status ok and the
  same ``config_hash``: a finished job is not launched at all, so its files stay as they were, byte for byte.
- :class:`SweepSummary`, a Hydra callback, follows the sweep from its directory (so it sees the jobs of every
  launcher, in this process or not): jobs done / total, failed and the time to go on stderr and in
  ``<sweep dir>/sweep.log``; at the end it lists the failures (for the command's exit code) and writes the sweep's
  summary (:func:`hopbench.app.report.write_summary`), mirrored to a wandb run of ``job_type=summary``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hopbench.app.tracking import (
    WandbLogger,
    completed,
    config_hash,
    json_safe,
    log_artifact,
    run_id,
    wandb_group,
)

__all__ = ["EXPECTED", "MAX_DIRNAME", "OUTCOME", "RESUMABLE", "Progress", "SweepSummary", "job_dirname",
           "resumable_batches", "sweep_outcome"]

log = logging.getLogger("hopbench.sweep")

#: the last multirun's outcome in this process: {"jobs": n, "failed": [(job dir, status, error), ...]}
OUTCOME: dict[str, Any] = {}
#: the sweep this process runs: "jobs" the command line expands to (pre-flight), the "sweeper" option it chose,
#: and the jobs "resumed" (already complete, not launched)
EXPECTED: dict[str, Any] = {}
#: the ``hydra/sweeper`` option of :class:`ResumableSweeper`
RESUMABLE = "resumable"
#: the longest job folder name; a longer one (or one with characters changed) is cut and ends with a hash
MAX_DIRNAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+\-]")


def job_dirname(overrides: Sequence[str], exclude: Sequence[str] = ()) -> str:
    """A job's folder name: its overrides as ``key=value`` joined by commas, sorted with ``seed`` last, without the
    keys in ``exclude`` (``logger.*`` leaves out every key under ``logger``). Characters other than letters, digits
    and ``._,=+-`` become ``_``; a name that changed that way or is longer than :data:`MAX_DIRNAME` is cut and ends
    with a hash of the whole, so different jobs never share a folder."""
    prefixes = tuple(e[:-1] for e in exclude if e.endswith(".*"))
    items = []
    for line in map(str, overrides):
        key = line.partition("=")[0].lstrip("+~")
        if key in exclude or key.startswith(prefixes or ("\0",)):
            continue
        items.append(line)
    items.sort(key=lambda item: (item.lstrip("+~").startswith("seed="), item))
    name = ",".join(items)
    if not name:
        return "job"
    safe = _UNSAFE.sub("_", name)
    if safe == name and len(name) <= MAX_DIRNAME:
        return name
    return f"{safe[:MAX_DIRNAME - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver(
    "hopbench.job_dir", lambda overrides, exclude=(): job_dirname(list(overrides), list(exclude or ())), replace=True)


def _say(sweep_dir: Path, message: str) -> None:
    """A sweep-level line: on stderr and appended to ``<sweep dir>/sweep.log``."""
    print(f"hopbench: {message}", file=sys.stderr, flush=True)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(sweep_dir / "sweep.log", "a") as fh:
            fh.write(f"[{datetime.now().isoformat(timespec='seconds')}] {message}\n")
    except OSError as err:  # the line is on stderr; a read-only sweep folder must not stop the sweep
        log.debug("sweep.log not written: %s", err)


def resumable_batches(sweeper: BasicSweeper, overrides: list[Override], max_batch_size: int | None
                      ) -> list[list[list[str]]]:
    """The batches a resumable sweeper launches: every job of the sweep, each named by its swept keys (the fixed
    keys join ``hydra.job.config.override_dirname.exclude_keys``; a swept key leaves it, so that ``device=cpu,cuda``
    gives two folders), less those already complete in the sweep folder (with ``resume``)."""
    assert sweeper.config is not None
    jobs = BasicSweeper.split_arguments(overrides, None)[0]
    fixed = {o.key_or_group for o in overrides if not o.is_sweep_override()}
    swept = {o.key_or_group for o in overrides if o.is_sweep_override()}
    exclude = sorted({*sweeper.config.hydra.job.config.override_dirname.exclude_keys, *fixed} - swept)
    naming = f"hydra.job.config.override_dirname.exclude_keys=[{','.join(repr(str(k)) for k in exclude)}]"
    jobs = [[*job, naming] for job in jobs]
    todo = _unfinished(sweeper, jobs)
    EXPECTED["resumed"] = len(jobs) - len(todo)
    return list(BasicSweeper.split_overrides_to_chunks(todo, max_batch_size)) if todo else []


def _unfinished(sweeper: BasicSweeper, jobs: list[list[str]]) -> list[list[str]]:
    """Jobs whose folder does not hold their complete results (all of them without ``resume``)."""
    assert sweeper.config is not None
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    if sweeper.config.get("resume") is False or not any(sweep_dir.glob("*/results.json")):
        return jobs
    assert sweeper.hydra_context is not None
    todo = []
    for job in jobs:
        cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, list(job))
        out_dir, digest = _job_identity(cfg)
        if completed(out_dir, digest) is None:
            todo.append(job)
    if len(todo) < len(jobs):
        _say(sweep_dir, f"resume: {len(jobs) - len(todo)} of {len(jobs)} jobs already complete in {sweep_dir}; "
                        f"running {len(todo)}")
    return todo


def _job_identity(cfg: DictConfig) -> tuple[Path, str]:
    """(output folder, config_hash) of a composed sweep job, exactly as its run will compute them."""
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} interpolations, as Hydra's run_job does
    try:
        out_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        task = copy.deepcopy(cfg)
        with read_write(task), open_dict(task):
            del task["hydra"]
        digest = config_hash(OmegaConf.to_container(task, resolve=True))
    finally:
        if previous is not None:
            HydraConfig.instance().set_config(previous)
    return out_dir, digest


def sweep_outcome(sweep_dir: Path) -> dict[str, Any]:
    """Jobs under ``sweep_dir`` and those that did not finish ok (unreadable results count as failed)."""
    jobs, failed = 0, []
    for file in sorted(sweep_dir.rglob("results.json")):
        jobs += 1
        try:
            results = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            failed.append((str(file.parent), "unreadable", str(err)))
            continue
        if results.get("status") != "ok":
            failed.append((str(file.parent), results.get("status"), results.get("error")))
    return {"jobs": jobs, "failed": failed}


class Progress:
    """Jobs done / total, failed and the time to go, read from the sweep folder: a job is done when its
    results.json was written after the sweep started (any status), so jobs of launchers in other processes or on
    other machines count as soon as their files land. Polled every ``interval`` seconds on a thread and after each
    job that ends in this process; a line is written when a count changes."""

    def __init__(self, sweep_dir: Path, *, interval: float = 2.0) -> None:
        self.sweep_dir, self.interval = Path(sweep_dir), interval
        self.start = time.time()
        self.statuses: dict[Path, tuple[int, str]] = {}
        self.last: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hopbench-sweep-progress", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def end(self) -> None:
        """Stop polling; the last line (once, even when every job was resumed and none ran)."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll(force=self.last is None)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def counts(self) -> tuple[int, int]:
        """(jobs done since the start, of which not ok)."""
        for file in self.sweep_dir.glob("*/results.json"):
            try:
                mtime = file.stat().st_mtime_ns
                if mtime < self.start * 1e9 or self.statuses.get(file, (None,))[0] == mtime:
                    continue
                status = json.loads(file.read_text()).get("status", "unreadable")
            except (OSError, ValueError, AttributeError):
                continue  # being replaced right now: read on the next poll
            self.statuses[file] = (mtime, str(status))
        done = len(self.statuses)
        return done, sum(status != "ok" for _, status in self.statuses.values())

    def poll(self, *, force: bool = False) -> None:
        with self._lock:
            done, failed = self.counts()
            if ((done, failed) == self.last or not done) and not force:  # a line when a job has ended
                return
            self.last = (done, failed)
            _say(self.sweep_dir, self.line(done, failed))

    def line(self, done: int, failed: int) -> str:
        total, resumed = EXPECTED.get("jobs"), int(EXPECTED.get("resumed") or 0)
        elapsed = time.time() - self.start
        parts = [f"sweep: {resumed + done}" + (f"/{total}" if total else "") + " jobs done"]
        if resumed:
            parts.append(f"{resumed} resumed")
        parts.append(f"{failed} failed")
        parts.append(f"{elapsed:.0f} s")
        left = (total - resumed - done) if total else None
        if left and done:
            parts.append(f"about {_duration(elapsed / done * left)} to go")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


#: the progress of the multirun in this process (a module global: the callback itself travels to job processes)
_PROGRESS: dict[str, Progress] = {}


class SweepSummary(Callback):
    """Follows a multirun (progress from the sweep folder) and at its end lists the failed jobs and writes the
    summary (summary.csv / summary.parquet, aggregates over seeds, figures; a wandb summary run)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        OUTCOME.clear()
        progress = Progress(Path(config.hydra.sweep.dir))
        _PROGRESS["sweep"] = progress
        progress.begin()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        progress = _PROGRESS.get("sweep")
        if progress is not None:  # a job of this process (the basic launcher): say so at once
            progress.poll()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        progress = _PROGRESS.pop("sweep", None)
        if progress is not None:
            progress.end()
        outcome = sweep_outcome(sweep_dir)
        OUTCOME.update(outcome)
        if outcome["failed"]:
            lines = [f"{len(outcome['failed'])} of {outcome['jobs']} jobs did not finish ok:"]
            lines += [f"  {status}: {path}: {error}" for path, status, error in outcome["failed"]]
            log.error("\n".join(lines))
        else:
            log.info("sweep: all %d jobs ok (%s)", outcome["jobs"], sweep_dir)
        if outcome["jobs"]:
            self._summary(config, sweep_dir)

    @staticmethod
    def _summary(config: DictConfig, sweep_dir: Path) -> None:
        from hopbench.app.report import collect, write_summary

        try:
            written = write_summary(collect([sweep_dir]), sweep_dir)
        except Exception as err:  # the jobs' results stand; say why their summary is missing
            log.exception("sweep summary failed")
            _say(sweep_dir, f"sweep summary not written: {type(err).__name__}: {err}")
            return
        _say(sweep_dir, f"summary: {written.csv} ({written.jobs} job rows; {written.aggregates} configurations, "
                        f"mean over seeds), {len(written.figures)} figure(s) in {written.figures_dir}")
        try:
            summary_run(config, sweep_dir, written)
        except Exception as err:  # a mirror that fails must not hide the summary on disk
            log.exception("wandb summary run failed")
            _say(sweep_dir, f"wandb summary run not logged: {type(err).__name__}: {err}")


def summary_run(config: DictConfig, sweep_dir: Path, written: Any) -> None:
    """With wandb on, one run of ``job_type=summary`` in the sweep's group: the job and aggregate tables, the
    figures, and summary.csv / summary.parquet as an artifact."""
    logger = instantiate(config.logger)
    if not isinstance(logger, WandbLogger) or not logger.active:
        return
    import wandb

    name = f"{config.experiment_name}-summary"
    run = logger.start(sweep_dir, config={"sweep_dir": str(sweep_dir), "jobs": written.jobs,
                                          "axes": json.dumps(written.axes)},
                       group=wandb_group(config.experiment_name, sweep_dir), job_type="summary", name=name,
                       run_id=run_id("summary", sweep_dir), tags=["summary"])
    if run is None:
        return
    frame = written.frame
    tables = {"summary/jobs": frame[frame["row"] == "job"], "summary/aggregates": frame[frame["row"] == "aggregate"]}
    run.log({key: wandb.Table(dataframe=_wandb_ready(part)) for key, part in tables.items()})
    run.log({f"summary/{path.stem}": wandb.Image(str(path)) for path in written.figures})
    log_artifact(run, f"summary-{run.id}", "summary", [written.csv, written.parquet])
    run.finish()


def _wandb_ready(frame: Any) -> Any:
    """A table wandb can type: columns of mixed Python objects become strings (null stays null)."""
    out = frame.dropna(axis=1, how="all").reset_index(drop=True)
    for column in [c for c in out.columns if out[c].dtype == object]:
        out[column] = [None if v is None or v != v else str(json_safe(v)) for v in out[column]]
    return out
