"""``task=reproduce``: a published result as a hopbench task (``make repro-<name>``, conf/experiment/repro_*).

Writes ``<out>/<which>/`` (CSV data, PNG figures, verdict.json) through :func:`hopbench.repro.reproduce` and
mirrors the figures into the run's folder and wandb.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hopbench.app.job import Job, Task
from hopbench.app.tracking import Recorder
from hopbench.errors import ConfigError, flag
from hopbench.repro import MODULES, Context, load, reproduce

__all__ = ["Reproduce"]

log = logging.getLogger(__name__)


class Reproduce(Task):
    """Reproduction ``which`` at its default size (``params``), or ``full_params`` with ``full``."""

    name = "reproduce"

    def __init__(self, *, which: str, out: str = "reproductions", figures: bool = True, full: bool = False,
                 params: dict | None = None, full_params: dict | None = None,
                 tiny_params: dict | None = None) -> None:
        load(which)  # unknown name: one line listing the reproductions
        self.which, self.out = which, str(out)
        self.figures, self.full = flag("task.figures", figures), flag("full", full)
        for key, value in (("params", params), ("full_params", full_params), ("tiny_params", tiny_params)):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"task.{key}", value, "must be a mapping of the reproduction's parameters",
                                  allowed=sorted(MODULES))
        self.params = dict(full_params if full else params or {})

    def largest_system(self, job: Job) -> tuple[int, int]:
        return 1, 1  # a reproduction sizes its own systems

    def run(self, job: Job, recorder: Recorder) -> dict:
        ctx = Context(self.which, Path(self.out) / self.which, job.system.torch_device,
                      seed=job.system.seed, figures=self.figures, recorder=recorder)
        document = reproduce(self.which, self.params, ctx, full=self.full)
        metrics = {"passed": document["passed"], "claims_passed": sum(c["passed"] for c in document["claims"]),
                   "claims": len(document["claims"]), "time_s": document["time_s"]}
        lines = [f"reproduction {self.which}: {metrics['claims_passed']} of {metrics['claims']} claims pass -> "
                 f"{ctx.out_dir / 'verdict.json'}"]
        lines += [f"  [{'pass' if c['passed'] else 'FAIL'}] {c['claim']}: {c['measured']} (tolerance: {c['tolerance']})"
                  for c in document["claims"]]
        log.info("\n".join(lines))
        return {"metrics": metrics, "comparison": None, "models": {}, "theory_backed": None, "theory_reasons": [],
                "reproduction": document}
