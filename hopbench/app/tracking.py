"""Results on disk (the source of truth) and their wandb mirror (docs/design.md §8).

Every file is written to a temporary name in the same directory and renamed, so a finished result is never
left half-written. ``config_hash`` identifies a job's science (not where or how it ran), so that a sweep can
resume without recompute. wandb runs offline unless the user asks for online (``logger.mode=online`` or
``WANDB_MODE=online``); ``logger=none`` or ``WANDB_MODE=disabled`` turns it off. A job's wandb run has the
config flat (``activation.beta``), tags, and results.json with the tables as an artifact; its id comes from the
config hash and folder, so a job run again continues its run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from hopbench.errors import choice
from hopbench.registry import Registry

__all__ = ["LOGGERS", "RUN_SETTINGS", "Logger", "NoLogger", "Recorder", "WandbLogger", "atomic_path", "completed",
           "config_hash", "flat_config", "json_safe", "log_artifact", "run_id", "save_figure", "science", "versions",
           "wandb_group", "write_json"]

#: top-level keys that say how and where a job runs, not what it computes: left out of ``config_hash``, of job
#: folder names and of the keys a summary groups by
RUN_SETTINGS = ("logger", "hydra", "device", "threads", "resume", "experiment_name", "objective")


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


def science(config: dict) -> dict:
    """The part of a resolved config that decides what a job computes (without :data:`RUN_SETTINGS`)."""
    return {k: v for k, v in config.items() if k not in RUN_SETTINGS}


def config_hash(config: dict) -> str:
    """Hash of the science of a resolved config: the same on any device, logger, thread count or experiment name."""
    return hashlib.sha256(json.dumps(json_safe(science(config)), sort_keys=True).encode()).hexdigest()[:16]


def run_id(digest: str, out_dir: Path) -> str:
    """A wandb run id for the job of ``config_hash`` ``digest`` in ``out_dir``: a re-run of the same job continues
    its run; the same config in another folder (another sweep) is another run."""
    return hashlib.sha256(f"{digest}:{Path(out_dir).absolute()}".encode()).hexdigest()[:16]


def wandb_group(experiment_name: str, sweep_dir: Path | None) -> str:
    """The wandb group of a job: its experiment, and in a multirun the sweep (``<experiment>/<sweep folder>``)."""
    return experiment_name if sweep_dir is None else f"{experiment_name}/{Path(sweep_dir).name}"


def completed(out_dir: Path, digest: str) -> dict | None:
    """The results of ``out_dir`` when its job finished ok with science ``digest`` (a job to skip on resume)."""
    try:
        results = json.loads((Path(out_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(results, dict) and results.get("status") == "ok" and results.get("config_hash") == digest
    return results if ok else None


def flat_config(config: dict, choices: dict | None = None) -> dict[str, Any]:
    """A resolved config as one level of ``key.sub`` keys (``activation.beta``), for filtering and grouping: a
    config group's node becomes its option name (``choices``, e.g. ``activation: tanh``) and its parameters
    ``group.param``; ``_target_`` is left out; lists become JSON strings."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            if prefix in (choices or {}):
                out[prefix] = choices[prefix]
            for key, value in node.items():
                if key != "_target_":
                    walk(value, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(node, list | tuple):
            out[prefix] = json.dumps(json_safe(list(node)))
        else:
            out[prefix] = json_safe(node)

    walk(config, "")
    return out


def versions() -> dict[str, str]:
    """Versions of hopbench and of the libraries its numbers depend on (from the installed distributions)."""
    out = {}
    for name in ("hopbench", "torch", "torchdiffeq", "hydra-core", "numpy", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return {**out, "python": platform.python_version()}


def save_figure(draw: Callable[[], Any], target: Path, *, dpi: int) -> Path:
    """Write the matplotlib figure ``draw()`` returns to ``target`` as PNG (atomically)."""
    fig = draw()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    if getattr(fig, "number", None) is not None:  # a pyplot figure: release it from pyplot's registry
        import matplotlib.pyplot as plt

        plt.close(fig)
    return target


class Logger:
    """A config-group option of ``logger``: where a run is mirrored besides its own folder."""

    name: str = ""

    def start(self, out_dir: Path, *, config: dict, group: str, job_type: str, name: str, run_id: str | None = None,
              tags: Sequence[str] = ()) -> Any:
        """A started run (None: nothing to mirror to); ``run_id`` continues that run when it exists."""
        return None


class NoLogger(Logger):
    """``logger=none``: results stay in the run's folder only."""

    name = "none"


class WandbLogger(Logger):
    """``logger=wandb``: one wandb run per job, offline unless ``mode=online`` (or ``WANDB_MODE`` says so);
    ``mode=disabled`` or ``WANDB_MODE=disabled`` turns it off."""

    name = "wandb"
    MODES = ("offline", "online", "disabled")

    def __init__(self, *, mode: str | None = None, project: str = "hopbench", entity: str | None = None,
                 group: str | None = None, tags: list[str] | None = None) -> None:
        self.mode = None if mode is None else choice("logger.mode", mode, self.MODES)
        self.project, self.entity, self.group = str(project), entity, group
        self.tags = [str(t) for t in (tags or [])]

    @property
    def active(self) -> bool:
        """Whether runs are mirrored at all (not ``mode=disabled`` nor ``WANDB_MODE=disabled``)."""
        return (self.mode or os.environ.get("WANDB_MODE") or "offline") != "disabled"

    def start(self, out_dir: Path, *, config: dict, group: str, job_type: str, name: str, run_id: str | None = None,
              tags: Sequence[str] = ()) -> Any:
        """A wandb run with ``config`` as given (flat keys filter and group in the UI) and the logger's tags after
        ``tags``; with ``run_id`` a re-run continues its run instead of adding a duplicate."""
        if not self.active:
            return None
        import wandb

        mode = self.mode or os.environ.get("WANDB_MODE") or "offline"
        return wandb.init(project=self.project, entity=self.entity, group=self.group or group, job_type=job_type,
                          name=name, tags=[t[:64] for t in dict.fromkeys([*tags, *self.tags])],
                          config=json_safe(config), dir=str(out_dir), mode=mode, id=run_id,
                          resume="allow" if run_id else None, reinit="finish_previous",
                          settings=wandb.Settings(silent=True))


LOGGERS: Registry[Logger] = Registry("logger")
LOGGERS.register("none")(NoLogger)
LOGGERS.register("wandb")(WandbLogger)


class Recorder:
    """Writes tables (parquet), figures (PNG) and results.json into ``out_dir``; mirrors them to the logger."""

    def __init__(self, out_dir: Path, logger: Logger, *, config: dict, group: str, job_type: str, name: str,
                 run_id: str | None = None, tags: Sequence[str] = ()) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.tables: list[str] = []
        self.figures: list[str] = []
        self._curves: set[str] = set()
        self.run = logger.start(self.out_dir, config=config, group=group, job_type=job_type, name=name,
                                run_id=run_id, tags=tags)

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

    def arrays(self, name: str, **arrays: Any) -> None:
        """Save arrays as ``name``.npz (e.g. trained weights), atomically; the results artifact holds it."""
        import numpy as np

        target = self.out_dir / f"{name}.npz"
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        self.tables.append(target.name)

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
            self._log_files(target)
            self.run.finish(exit_code=0 if results.get("status") == "ok" else 1)
            self.run = None
        return target


    def _log_files(self, results: Path) -> None:
        """results.json and the job's tables and arrays (parquet, npz) as one artifact of the run."""
        log_artifact(self.run, f"results-{self.run.id}", "results", [results, *(self.out_dir / t for t in self.tables)])


def log_artifact(run: Any, name: str, kind: str, files: Sequence[Path]) -> None:
    """Files that exist among ``files`` as an artifact ``name`` of type ``kind`` of the wandb ``run``."""
    import wandb

    artifact = wandb.Artifact(name, type=kind)
    for file in files:
        if Path(file).is_file():
            artifact.add_file(str(file), name=Path(file).name)
    run.log_artifact(artifact)


def _flatten(data: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out
