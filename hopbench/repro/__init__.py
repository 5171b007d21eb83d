"""Reproductions of published results (``task=reproduce``, ``make repro-*``).

Each reproduction is a function ``run(params, ctx) -> list[Verdict]`` registered in :data:`REPRODUCTIONS`
(one module per result in this package). It computes its figures from a run, writes its data (CSV) and
figure (PNG) through ``ctx`` into ``reproductions/<name>/``, and returns verdicts: the claim, the measured
figure, the tolerance and pass/fail — computed, never written by hand. ``write_report`` gathers every
``verdict.json`` into ``reproductions/REPORT.md``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from hopbench.registry import Registry
from hopbench.tracking import Recorder, atomic_path, json_safe, write_json

__all__ = ["MODULES", "REPRODUCTIONS", "Context", "Verdict", "cpu_threads", "load", "reproduce", "write_report"]

#: reproduction name -> module in this package (each module registers one reproduction of its own name)
MODULES = {m.name: m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


@contextmanager
def cpu_threads(count: int, device: torch.device) -> Iterator[None]:
    """Run with ``count`` torch threads on a CPU device (restored afterwards); 0 or a GPU leaves them alone.

    The reproductions' matrices (N ≤ 800) are too small for a thread pool: on a shared 2-core machine torch's
    spinning threads slowed eigvalsh by 3-100x and a (B, 100) vector field from 0.08 ms to 36 ms (measured).
    """
    previous = torch.get_num_threads()
    if count > 0 and device.type == "cpu":
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Verdict:
    """One claim checked against a run."""

    claim: str
    measured: Any
    tolerance: str
    passed: bool
    details: dict = field(default_factory=dict)


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
            frame.to_csv(tmp, index=False)
        self.files.append(target.name)
        if self.recorder is not None:
            self.recorder.table(f"{self.name}_{name}", frame)

    def figure(self, name: str, draw: Callable[[], Any]) -> None:
        """Save the figure ``draw()`` returns as ``name``.png (skipped when figures are off)."""
        if not self.figures:
            return
        import matplotlib.pyplot as plt

        fig = draw()
        target = self.out_dir / f"{name}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
        plt.close(fig)
        self.files.append(target.name)
        if self.recorder is not None:
            self.recorder.figure(f"{self.name}_{name}", lambda: _reopen(target))


def _reopen(path: Path) -> Any:
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.imshow(mpimg.imread(path))
    ax.axis("off")
    return fig


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
    """Run reproduction ``name`` and write its verdict.json; returns the verdict document."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    verdicts = load(name)(params, ctx)
    document = {
        "name": name, "passed": all(v.passed for v in verdicts), "claims": [asdict(v) for v in verdicts],
        "params": params, "full": full, "device": str(ctx.device), "seed": ctx.seed,
        "time_s": time.perf_counter() - start, "files": ctx.files,
    }
    write_json(ctx.out_dir / "verdict.json", document)
    return json_safe(document)


def write_report(root: Path) -> Path:
    """reproductions/REPORT.md: one line per claim with its measured figure and verdict, figures linked."""
    lines = ["# hopbench reproductions", "",
             "Generated by `make repro-all` from the `verdict.json` files below; every figure is computed by the run.",
             ""]
    documents = [json.loads(p.read_text()) for p in sorted(root.glob("*/verdict.json"))]
    total = sum(len(d["claims"]) for d in documents)
    passed = sum(c["passed"] for d in documents for c in d["claims"])
    lines += [f"**{passed} of {total} claims pass.**", "", "| reproduction | claim | measured | tolerance | verdict |",
              "|---|---|---|---|---|"]

    def cell(value: Any) -> str:  # a markdown table cell: |ΔE| must not split it
        return (f"{value:.4g}" if isinstance(value, float) else str(value)).replace("|", "\\|").replace("\n", " ")

    for doc in documents:
        for claim in doc["claims"]:
            mark = "pass" if claim["passed"] else "**FAIL**"
            lines.append(f"| [{doc['name']}]({doc['name']}/) | {cell(claim['claim'])} | {cell(claim['measured'])} | "
                         f"{cell(claim['tolerance'])} | {mark} |")
    lines += ["", "## Figures", ""]
    for doc in documents:
        size = "full" if doc.get("full") else "default"
        lines.append(f"### {doc['name']} ({size} size, {doc['device']}, {doc['time_s']:.0f} s)")
        lines.append("")
        lines += [f"![{f}]({doc['name']}/{f})" for f in doc["files"] if f.endswith(".png")]
        lines += [f"- data: [{f}]({doc['name']}/{f})" for f in doc["files"] if f.endswith(".csv")]
        lines.append("")
    target = root / "REPORT.md"
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m hopbench.repro [DIR]``: write DIR/REPORT.md (default: reproductions)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    print(write_report(Path(args[0] if args else "reproductions")))
    return 0
