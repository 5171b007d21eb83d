"""Results on disk (the source of truth) and their wandb mirror (DESIGN §8).

Every file is written to a temporary name in the same directory and renamed, so a finished result is never
left half-written. wandb runs offline unless the user asks for online (``logger.mode=online`` or
``WANDB_MODE=online``); ``logger=none`` or ``WANDB_MODE=disabled`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["Recorder", "atomic_path", "config_hash", "json_safe", "save_figure", "versions", "write_json"]


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def json_safe(value: Any) -> Any:
    """Plain JSON: NaN/inf become null (never 0), numpy and torch scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def write_json(target: Path, data: dict) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def config_hash(config: dict) -> str:
    """Hash of the resolved config without logging settings (same science, same hash)."""
    science = {k: v for k, v in config.items() if k not in ("logger", "hydra")}
    return hashlib.sha256(json.dumps(json_safe(science), sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    import hydra
    import numpy
    import torch
    import torchdiffeq

    import hopbench

    return {"hopbench": hopbench.__version__, "torch": torch.__version__, "torchdiffeq": torchdiffeq.__version__,
            "hydra": hydra.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def save_figure(draw: Callable[[], Any], target: Path, *, dpi: int) -> Path:
    """Write the matplotlib figure ``draw()`` returns to ``target`` as PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    fig = draw()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return target


class Recorder:
    """Writes tables (parquet), figures (PNG) and results.json into ``out_dir``; mirrors them to wandb."""

    def __init__(self, out_dir: Path, logger: dict, *, config: dict, group: str, job_type: str, name: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tables: list[str] = []
        self.figures: list[str] = []
        self._curves: set[str] = set()
        self.run = self._start_wandb(logger, config, group, job_type, name)

    def _start_wandb(self, logger: dict, config: dict, group: str, job_type: str, name: str) -> Any:
        mode = logger.get("mode") or os.environ.get("WANDB_MODE") or "offline"
        if logger.get("name") != "wandb" or mode == "disabled":
            return None
        import wandb

        return wandb.init(project=logger.get("project", "hopbench"), entity=logger.get("entity"),
                          group=logger.get("group") or group, job_type=job_type, name=name,
                          tags=list(logger.get("tags") or []), config=json_safe(config), dir=str(self.out_dir),
                          mode=mode, reinit="finish_previous", settings=wandb.Settings(silent=True))

    def table(self, name: str, frame: pd.DataFrame) -> None:
        target = self.out_dir / f"{name}.parquet"
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False)
        self.tables.append(target.name)
        if self.run is not None:
            import wandb

            self.run.log({f"tables/{name}": wandb.Table(dataframe=frame.head(10_000))})

    def log(self, row: dict[str, Any], prefix: str = "train") -> None:
        """Scalars of one step of a long computation (e.g. training curves) to wandb as ``prefix/<key>``, plotted
        against ``prefix/step`` = ``row['step']`` (declared with ``define_metric`` on first use)."""
        if self.run is None:
            return
        if prefix not in self._curves:
            self.run.define_metric(f"{prefix}/step")
            self.run.define_metric(f"{prefix}/*", step_metric=f"{prefix}/step")
            self._curves.add(prefix)
        self.run.log({f"{prefix}/{k}": v for k, v in json_safe(row).items() if v is not None})

    def arrays(self, name: str, **arrays: Any) -> Path:
        """Save arrays as ``name``.npz (e.g. trained weights), atomically; returns the file."""
        import numpy as np

        target = self.out_dir / f"{name}.npz"
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        self.tables.append(target.name)
        return target

    def artifact(self, name: str, path: Path, *, kind: str = "model", metadata: dict | None = None) -> None:
        """A file of the run (e.g. trained weights) as a wandb artifact ``name`` of type ``kind``."""
        if self.run is not None:
            import wandb

            artifact = wandb.Artifact(name, type=kind, metadata=json_safe(metadata or {}))
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)

    def figure(self, name: str, draw: Callable[[], Any]) -> None:
        """Save the matplotlib figure returned by ``draw()`` as ``name``.png."""
        self._register(name, save_figure(draw, self.out_dir / f"{name}.png", dpi=120))

    def image(self, name: str, path: Path) -> None:
        """Add an existing PNG (e.g. a reproduction's figure) to the run as ``name``.png, byte for byte."""
        target = self.out_dir / f"{name}.png"
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
        self._register(name, target)

    def _register(self, name: str, target: Path) -> None:
        self.figures.append(target.name)
        if self.run is not None:
            import wandb

            self.run.log({f"figures/{name}": wandb.Image(str(target))})

    def finish(self, results: dict) -> Path:
        """Write results.json (atomically) and close the wandb run with the summary metrics."""
        results = {**results, "tables": self.tables, "figures": self.figures}
        target = self.out_dir / "results.json"
        write_json(target, results)
        if self.run is not None:
            summary = _flatten({"metrics": results.get("metrics", {}), "comparison": results.get("comparison", {}),
                                "status": results.get("status")})
            self.run.summary.update(json_safe(summary))
            self.run.finish(exit_code=0 if results.get("status") == "ok" else 1)
            self.run = None
        return target


def _flatten(data: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out
