"""Pattern sets and cue corruptions (DESIGN §4.3). Patterns are (P, N) in activity space, float64 on CPU,
drawn from an explicit ``torch.Generator`` so that runs are reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hopbench.errors import ConfigError
from hopbench.registry import Registry

__all__ = ["CUES", "DATASETS", "PatternSet", "build_dataset", "corrupt"]

KINDS = ("bipolar", "binary", "graded")


@dataclass(frozen=True)
class PatternSet:
    """Stored patterns and how to draw more states like them.

    ``kind``: bipolar (±1; ±ξ count as the same memory), binary ({0,1} with ``coding_level``) or graded.
    ``sample(m, generator)`` draws m random states (M, N) from the same distribution (spurious-memory probes).
    """

    patterns: Tensor
    kind: str
    sample: Callable[[int, torch.Generator], Tensor]
    coding_level: float | None = None

    @property
    def n_patterns(self) -> int:
        return self.patterns.shape[0]

    @property
    def n_neurons(self) -> int:
        return self.patterns.shape[1]

    @property
    def sign_symmetric(self) -> bool:
        return self.kind == "bipolar"


DATASETS: Registry[PatternSet] = Registry("dataset")


def _bipolar(m: int, n: int, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (m, n), generator=gen, dtype=torch.int64).double().mul_(2).sub_(1)


@DATASETS.register("random_binary")
def random_binary(*, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
    """Independent ±1 entries."""
    sample = lambda m, gen: _bipolar(m, n_neurons, gen)  # noqa: E731
    return PatternSet(sample(n_patterns, generator), "bipolar", sample)


@DATASETS.register("sparse_binary")
def sparse_binary(*, n_patterns: int, n_neurons: int, generator: torch.Generator,
                  coding_level: float = 0.1, exact: bool = False) -> PatternSet:
    """{0, 1} entries, each 1 with probability ``coding_level`` f (``exact``: exactly round(fN) ones each)."""
    if not 0 < coding_level < 1:
        raise ConfigError("dataset.coding_level", coding_level, "must lie in (0, 1)")

    def sample(m: int, gen: torch.Generator) -> Tensor:
        if exact:
            return _pick(torch.Size((m, n_neurons)), coding_level, gen).double()
        return (torch.rand(m, n_neurons, generator=gen, dtype=torch.float64) < coding_level).double()

    return PatternSet(sample(n_patterns, generator), "binary", sample, coding_level)


@DATASETS.register("gaussian")
def gaussian(*, n_patterns: int, n_neurons: int, generator: torch.Generator, std: float = 1.0) -> PatternSet:
    """Independent N(0, std²) entries."""
    sample = lambda m, gen: std * torch.randn(m, n_neurons, generator=gen, dtype=torch.float64)  # noqa: E731
    return PatternSet(sample(n_patterns, generator), "graded", sample)


@DATASETS.register("lognormal")
def lognormal(*, n_patterns: int, n_neurons: int, generator: torch.Generator, cv: float = 1.0) -> PatternSet:
    """Positive graded entries, log-normal with mean 1 and coefficient of variation ``cv`` (§6)."""
    if cv <= 0:
        raise ConfigError("dataset.cv", cv, "must be > 0")
    s2 = math.log1p(cv * cv)

    def sample(m: int, gen: torch.Generator) -> Tensor:
        return torch.exp(math.sqrt(s2) * torch.randn(m, n_neurons, generator=gen, dtype=torch.float64) - s2 / 2)

    return PatternSet(sample(n_patterns, generator), "graded", sample)


def _from_array(name: str, table: np.ndarray, n_patterns: int, n_neurons: int, generator: torch.Generator,
                kind: str) -> PatternSet:
    """Pick ``n_patterns`` rows (seeded) of a (rows, N) array; random states are entry-shuffled rows."""
    rows, cols = table.shape
    if cols != n_neurons:
        raise ConfigError("n_neurons", n_neurons, f"dataset={name} has {cols} features per pattern",
                          allowed=cols)
    if n_patterns > rows:
        raise ConfigError("n_patterns", n_patterns, f"dataset={name} holds only {rows} patterns",
                          allowed=f"1..{rows}")
    data = torch.as_tensor(table, dtype=torch.float64)
    pick = torch.randperm(rows, generator=generator)[:n_patterns]

    def sample(m: int, gen: torch.Generator) -> Tensor:
        source = data[torch.randint(0, rows, (m,), generator=gen)]
        return torch.gather(source, 1, torch.rand(m, cols, generator=gen).argsort(-1))

    level = float(data.mean()) if kind == "binary" else None
    return PatternSet(data[pick], kind, sample, level)


@DATASETS.register("digits")
def digits(*, n_patterns: int, n_neurons: int, generator: torch.Generator, mode: str = "binarised",
           threshold: float = 8.0) -> PatternSet:
    """scikit-learn's bundled 8×8 handwritten digits (1797 images, 64 pixels, values 0..16).

    ``mode=binarised``: ±1 by ``threshold``; ``mode=graded``: pixel/16 in [0, 1].
    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    images = load_digits().data
    if mode == "binarised":
        return _from_array("digits", np.where(images > threshold, 1.0, -1.0), n_patterns, n_neurons, generator,
                           "bipolar")
    if mode == "graded":
        return _from_array("digits", images / 16.0, n_patterns, n_neurons, generator, "graded")
    raise ConfigError("dataset.mode", mode, "unknown digits mode", allowed=["binarised", "graded"])


@DATASETS.register("npz")
def npz(*, n_patterns: int, n_neurons: int, generator: torch.Generator, path: str = "",
        key: str | None = None, kind: str = "graded") -> PatternSet:
    """Patterns from a user's .npz file: array ``key`` (default: the first) of shape (rows, N)."""
    file = Path(path).expanduser()
    if not path or not file.is_file():
        raise ConfigError("dataset.path", path, "no such .npz file")
    if kind not in KINDS:
        raise ConfigError("dataset.kind", kind, "unknown pattern kind", allowed=KINDS)
    with np.load(file) as archive:
        names = list(archive.files)
        if key is not None and key not in names:
            raise ConfigError("dataset.key", key, f"not an array in {file.name}", allowed=names)
        table = np.asarray(archive[key or names[0]], dtype=np.float64)
    if table.ndim != 2:
        raise ConfigError("dataset.key", key or names[0], f"array has shape {table.shape}, expected (P, N)")
    return _from_array("npz", table, n_patterns, n_neurons, generator, kind)


def build_dataset(name: str, params: dict | None, *, n_patterns: int, n_neurons: int,
                  generator: torch.Generator) -> PatternSet:
    return DATASETS.build(name, params, n_patterns=n_patterns, n_neurons=n_neurons, generator=generator)


# corruptions --------------------------------------------------------------------------------------------
CUES: Registry[Callable[[Tensor, torch.Generator], Tensor]] = Registry("cue")


def _pick(shape: torch.Size, level: float, gen: torch.Generator) -> Tensor:
    """A mask (B, N) with exactly round(level·N) entries per row, at random positions."""
    k = round(level * shape[-1])
    order = torch.rand(shape, generator=gen, dtype=torch.float64).argsort(-1)
    return torch.zeros(shape, dtype=torch.bool).scatter_(-1, order[..., :k], True)


def _check_level(level: float) -> None:
    if not 0 <= level <= 1:
        raise ConfigError("cue.level", level, "must lie in [0, 1]")


@CUES.register("flip")
def flip(*, kind: str, level: float = 0.05) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Flip exactly round(level·N) signs (±1 patterns) or bits ({0,1} patterns) per cue."""
    _check_level(level)
    if kind == "graded":
        raise ConfigError("cue", "flip", "needs binary patterns (random_binary, sparse_binary, digits "
                          "binarised)", allowed=["gaussian", "mask"])

    def apply(targets: Tensor, gen: torch.Generator) -> Tensor:
        mask = _pick(targets.shape, level, gen)
        flipped = -targets if kind == "bipolar" else 1 - targets
        return torch.where(mask, flipped, targets)

    return apply


@CUES.register("gaussian")
def gaussian_noise(*, kind: str, level: float = 0.1) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Add N(0, level²·var(ξ)) noise to every entry (level relative to the pattern's standard deviation)."""
    if level < 0:
        raise ConfigError("cue.level", level, "must be ≥ 0")

    def apply(targets: Tensor, gen: torch.Generator) -> Tensor:
        std = targets.std(-1, keepdim=True)
        return targets + level * std * torch.randn(targets.shape, generator=gen, dtype=targets.dtype)

    return apply


@CUES.register("mask")
def mask(*, kind: str, level: float = 0.2, fill: str = "zero") -> Callable[[Tensor, torch.Generator], Tensor]:
    """Set exactly round(level·N) entries per cue to 0 (``fill=zero``) or to the pattern's mean (``mean``)."""
    _check_level(level)
    if fill not in ("zero", "mean"):
        raise ConfigError("cue.fill", fill, "unknown fill", allowed=["zero", "mean"])

    def apply(targets: Tensor, gen: torch.Generator) -> Tensor:
        m = _pick(targets.shape, level, gen)
        value = targets.mean(-1, keepdim=True).expand_as(targets) if fill == "mean" else torch.zeros_like(targets)
        return torch.where(m, value, targets)

    return apply


def corrupt(name: str, params: dict | None, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Corrupted copies (B, N) of ``targets`` (B, N) (CPU float64)."""
    return CUES.build(name, params, kind=kind)(targets, generator)
