"""The sweep as a whole: a Hydra callback that follows a multirun and says how it ended.

Jobs record their own outcome in ``results.json`` (ok, failed with the reason, interrupted). At the end of a
multirun the callback reads them back from the sweep directory (so it sees every launcher's jobs, in this
process or not), logs which jobs failed and why, and leaves the count for the command's exit code.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["EXPECTED", "OUTCOME", "SweepSummary", "sweep_outcome"]

log = logging.getLogger("hopbench.sweep")

#: the last multirun's outcome in this process: {"jobs": n, "failed": [(job dir, status, error), ...]}
OUTCOME: dict[str, Any] = {}
#: jobs the command line expands to (set by the pre-flight; for the progress line)
EXPECTED: dict[str, int] = {}


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


class SweepSummary(Callback):
    """Logs progress per job and, at the end of a multirun, which jobs failed and why."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.done, self.failed, self.multirun = 0, 0, False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start, self.done, self.failed, self.multirun = time.perf_counter(), 0, 0, True
        OUTCOME.clear()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not self.multirun:
            return
        self.done += 1
        self.failed += job_return.status.name != "COMPLETED"
        elapsed = time.perf_counter() - self.start
        total = EXPECTED.get("jobs")
        eta = f", about {elapsed / self.done * (total - self.done):.0f} s to go" if total and total > self.done else ""
        of = f" of {total}" if total else ""
        log.info("sweep: %d%s jobs done in %.0f s%s", self.done, of, elapsed, eta)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcome = sweep_outcome(Path(config.hydra.sweep.dir))
        OUTCOME.update(outcome)
        if outcome["failed"]:
            lines = [f"{len(outcome['failed'])} of {outcome['jobs']} jobs did not finish ok:"]
            lines += [f"  {status}: {path}: {error}" for path, status, error in outcome["failed"]]
            log.error("\n".join(lines))
        else:
            log.info("sweep: all %d jobs ok (%s)", outcome["jobs"], config.hydra.sweep.dir)
