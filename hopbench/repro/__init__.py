"""Reproductions of published results (``task=reproduce``, ``make repro-*``).

Each reproduction is a function ``run(params, ctx) -> list[Verdict]`` registered in :data:`REPRODUCTIONS`
(one module per result in this package). It computes its figures from a run, writes its data (CSV) and
figure (PNG) through ``ctx`` into ``reproductions/<name>/``, and returns verdicts: the claim, the measured
figure, the tolerance and pass/fail — computed, never written by hand. ``write_report`` gathers every
``verdict.json`` into ``reproductions/REPORT.md``.

Committed outputs are deterministic: ``verdict.json`` holds no wall time and its measured floats are rounded to
:data:`SIGNIFICANT` significant digits (the reproductions fix their seeds and their thread count), so running a
reproduction twice leaves ``git status`` clean. The wall time and device of each run go to
``reproductions/<name>/timing.json`` and, gathered by ``write_report``, to ``reproductions/TIMINGS.md`` — both
ignored by git.

A claim that compares groups whose values are all zero (or that has nothing to test) proves nothing: such a
verdict is *vacuous*; it counts as failed and REPORT.md marks it so.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hopbench.app.tracking import Recorder, atomic_path, json_safe, save_figure, write_json
from hopbench.registry import Registry
from hopbench.threads import job_budget

__all__ = ["MODULES", "REPRODUCTIONS", "SIGNIFICANT", "Context", "Verdict", "cpu_threads", "load", "reproduce",
           "rounded", "write_report"]

#: reproduction name -> module in this package (each module registers one reproduction of its own name; ``task``
#: is the task=reproduce option that runs them)
MODULES = {m.name: m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name != "task"}


@contextmanager
def cpu_threads(count: int, device: torch.device) -> Iterator[None]:
    """Run with ``count`` CPU threads on a CPU device (restored afterwards); 0 or a GPU leaves them alone.

    The reproductions' matrices (N ≤ 800) are too small for a thread pool: on a shared 2-core machine torch's
    spinning threads slowed eigvalsh by 3-100x and a (B, 100) vector field from 0.08 ms to 36 ms (measured).
    """
    if count <= 0 or device.type != "cpu":
        yield
        return
    with job_budget(count):
        yield


#: significant digits of the floats in verdict.json (and of the CSV files): enough for every tolerance, few enough
#: that rounding noise of the last bits does not change a committed file
SIGNIFICANT = 6
CSV_FLOAT_FORMAT = "%.10g"


def rounded(value: Any, digits: int = SIGNIFICANT) -> Any:
    """``value`` with every float (also inside dicts and lists) rounded to ``digits`` significant digits."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{digits}g}")
    return value


@dataclass
class Verdict:
    """One claim checked against a run. ``vacuous``: the comparison had nothing to compare (e.g. every group is
    zero); such a verdict never passes."""

    claim: str
    measured: Any
    tolerance: str
    passed: bool
    details: dict = field(default_factory=dict)
    vacuous: bool = False

    def __post_init__(self) -> None:
        self.passed = bool(self.passed) and not self.vacuous


@dataclass
class Context:
    """Where and how a reproduction writes: its folder, the Hydra run's recorder, device and dtype."""

    name: str
    out_dir: Path
    device: torch.device
    seed: int = 0
    figures: bool = True
    recorder: Recorder | None = None
    files: list[str] = field(default_factory=list)

    def csv(self, name: str, frame: pd.DataFrame) -> None:
        """Write ``name``.csv into the reproduction folder (atomically) and as a table of the run."""
        target = self.out_dir / f"{name}.csv"
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
        self.files.append(target.name)
        if self.recorder is not None:
            self.recorder.table(f"{self.name}_{name}", frame)

    def figure(self, name: str, draw: Callable[[], Any]) -> None:
        """Save the figure ``draw()`` returns as ``name``.png (skipped when figures are off)."""
        if not self.figures:
            return
        target = save_figure(draw, self.out_dir / f"{name}.png", dpi=130)
        self.files.append(target.name)
        if self.recorder is not None:
            self.recorder.image(f"{self.name}_{name}", target)


TIMING_FILE = "timing.json"  # per reproduction folder, ignored by git
Reproduction = Callable[[dict, Context], list[Verdict]]
REPRODUCTIONS: Registry[list[Verdict]] = Registry("task.which")


def load(name: str) -> Reproduction:
    """The reproduction function ``name`` (its module is imported on first use)."""
    if name in MODULES:
        importlib.import_module(f"hopbench.repro.{MODULES[name]}")
    if name not in REPRODUCTIONS:
        from hopbench.errors import ConfigError

        raise ConfigError("task.which", name, "unknown reproduction", allowed=sorted(MODULES))
    return REPRODUCTIONS.get(name)


def reproduce(name: str, params: dict, ctx: Context, *, full: bool = False) -> dict:
    """Run reproduction ``name``; write its verdict.json (deterministic) and timing.json (wall time, device).

    Returns the verdict document with ``time_s`` added (not written to verdict.json).
    """
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    verdicts = load(name)(params, ctx)
    wall = time.perf_counter() - start
    document = {
        "name": name, "passed": all(v.passed for v in verdicts),
        "claims": [rounded(asdict(v)) for v in verdicts],
        "params": params, "full": full, "device": str(ctx.device), "seed": ctx.seed, "files": ctx.files,
    }
    write_json(ctx.out_dir / "verdict.json", document)
    write_json(ctx.out_dir / TIMING_FILE, {
        "name": name, "full": full, "device": str(ctx.device), "wall_s": round(wall, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads()})
    return {**json_safe(document), "time_s": wall}


def _mark(claim: dict) -> str:
    if claim.get("vacuous"):
        return "**FAIL (vacuous)**"
    return "pass" if claim["passed"] else "**FAIL**"


def write_report(root: Path) -> Path:
    """reproductions/REPORT.md: one line per claim with its measured figure and verdict, figures linked.

    REPORT.md depends only on the verdict.json files (deterministic). The wall times, which vary from run to
    run, go to TIMINGS.md beside it, from each folder's timing.json (both ignored by git).
    """
    lines = ["# hopbench reproductions", "",
             "Generated by `make repro-all` from the `verdict.json` files below; every figure is computed by the run.",
             "A claim marked *vacuous* compared groups that are all zero (or had nothing to test): it proves "
             "nothing and counts as failed. Wall times: `TIMINGS.md` beside this file (written by the same "
             "command from each folder's `timing.json`; not committed, it changes with every run).", ""]
    documents = [json.loads(p.read_text()) for p in sorted(root.glob("*/verdict.json"))]
    total = sum(len(d["claims"]) for d in documents)
    passed = sum(c["passed"] for d in documents for c in d["claims"])
    vacuous = sum(bool(c.get("vacuous")) for d in documents for c in d["claims"])
    lines += [f"**{passed} of {total} claims pass** ({vacuous} of the failures vacuous).", "",
              "| reproduction | claim | measured | tolerance | verdict |", "|---|---|---|---|---|"]

    def cell(value: Any) -> str:  # a markdown table cell: |ΔE| must not split it
        return (f"{value:.4g}" if isinstance(value, float) else str(value)).replace("|", "\\|").replace("\n", " ")

    for doc in documents:
        for claim in doc["claims"]:
            lines.append(f"| [{doc['name']}]({doc['name']}/) | {cell(claim['claim'])} | {cell(claim['measured'])} | "
                         f"{cell(claim['tolerance'])} | {_mark(claim)} |")
    lines += ["", "## Figures", ""]
    for doc in documents:
        size = "full" if doc.get("full") else "default"
        lines.append(f"### {doc['name']} ({size} size, {doc['device']})")
        lines.append("")
        lines += [f"![{f}]({doc['name']}/{f})" for f in doc["files"] if f.endswith(".png")]
        lines += [f"- data: [{f}]({doc['name']}/{f})" for f in doc["files"] if f.endswith(".csv")]
        lines.append("")
    target = root / "REPORT.md"
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    write_timings(root, documents)
    return target


def write_timings(root: Path, documents: list[dict]) -> Path:
    """TIMINGS.md: wall time, device and size of each reproduction's last run (from its timing.json)."""
    lines = ["# Wall times of the reproductions", "",
             "From each folder's `timing.json`, written by the last run of that reproduction (not committed).", "",
             "| reproduction | size | device | wall time | finished | CPUs, torch threads |",
             "|---|---|---|---|---|---|"]
    total = 0.0
    for doc in documents:
        path = root / doc["name"] / TIMING_FILE
        if not path.exists():
            lines.append(f"| {doc['name']} | {'full' if doc.get('full') else 'default'} | {doc['device']} | "
                         "not recorded | | |")
            continue
        t = json.loads(path.read_text())
        total += float(t["wall_s"])
        lines.append(f"| {doc['name']} | {'full' if t.get('full') else 'default'} | {t['device']} | "
                     f"{_duration(float(t['wall_s']))} | {t.get('finished', '')} | {t.get('cpu_count')}, "
                     f"{t.get('torch_threads')} |")
    lines += ["", f"Total: {_duration(total)}."]
    target = root / "TIMINGS.md"
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return target


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    """``python -m hopbench.repro [DIR]``: write DIR/REPORT.md (default: reproductions)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    print(write_report(Path(args[0] if args else "reproductions")))
    return 0
