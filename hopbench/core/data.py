"""Pattern sets and cue corruptions (docs/design.md §4.3). Patterns are (P, N) in activity space, float64 on CPU,
drawn from an explicit ``torch.Generator`` so that runs are reproducible on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hopbench.errors import ConfigError, choice, flag, number
from hopbench.registry import Registry

__all__ = ["CUES", "DATASETS", "KINDS", "Corruption", "PatternSet", "PatternSource", "build_dataset", "corrupt"]

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


class PatternSource:
    """A config-group option of ``dataset``: how stored patterns (P, N) are drawn.

    Built from its parameters alone (checked here, before any compute); :meth:`draw` makes the
    :class:`PatternSet`. ``kind`` and ``n_features`` (None when any N works) are known before drawing, so
    a composition can be checked against them.
    """

    name: str = ""
    kind: str = "graded"

    @property
    def n_features(self) -> int | None:
        return None

    @property
    def n_rows(self) -> int | None:
        """How many patterns the source holds (None: unlimited)."""
        return None

    def check(self, n_patterns: int, n_neurons: int) -> None:
        """A ConfigError when the source cannot give ``n_patterns`` patterns of ``n_neurons`` entries."""
        if self.n_features is not None and n_neurons != self.n_features:
            raise ConfigError("n_neurons", n_neurons, f"dataset={self.name} has {self.n_features} features per "
                              "pattern", allowed=self.n_features)
        if self.n_rows is not None and n_patterns > self.n_rows:
            raise ConfigError("n_patterns", n_patterns, f"dataset={self.name} holds only {self.n_rows} patterns",
                              allowed=f"1..{self.n_rows}")

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        raise NotImplementedError


DATASETS: Registry[PatternSource] = Registry("dataset")


def _bipolar(m: int, n: int, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (m, n), generator=gen, dtype=torch.int64).double().mul_(2).sub_(1)


@DATASETS.register("random_binary")
class RandomBinary(PatternSource):
    """Independent ±1 entries."""

    name, kind = "random_binary", "bipolar"

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        sample = lambda m, gen: _bipolar(m, n_neurons, gen)  # noqa: E731
        return PatternSet(sample(n_patterns, generator), "bipolar", sample)


@DATASETS.register("sparse_binary")
class SparseBinary(PatternSource):
    """{0, 1} entries, each 1 with probability ``coding_level`` f (``exact``: exactly round(fN) ones each)."""

    name, kind = "sparse_binary", "binary"

    def __init__(self, *, coding_level: float = 0.1, exact: bool = False) -> None:
        self.coding_level = number("dataset.coding_level", coding_level, above=0, below=1)
        self.exact = flag("dataset.exact", exact)

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        f, exact = self.coding_level, self.exact

        def sample(m: int, gen: torch.Generator) -> Tensor:
            if exact:
                return _pick(torch.Size((m, n_neurons)), f, gen).double()
            return (torch.rand(m, n_neurons, generator=gen, dtype=torch.float64) < f).double()

        return PatternSet(sample(n_patterns, generator), "binary", sample, f)


@DATASETS.register("gaussian")
class Gaussian(PatternSource):
    """Independent N(0, std²) entries."""

    name = "gaussian"

    def __init__(self, *, std: float = 1.0) -> None:
        self.std = number("dataset.std", std, above=0)

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        std = self.std
        sample = lambda m, gen: std * torch.randn(m, n_neurons, generator=gen, dtype=torch.float64)  # noqa: E731
        return PatternSet(sample(n_patterns, generator), "graded", sample)


@DATASETS.register("lognormal")
class Lognormal(PatternSource):
    """Positive graded entries, log-normal with mean 1 and coefficient of variation ``cv`` (§6)."""

    name = "lognormal"

    def __init__(self, *, cv: float = 1.0) -> None:
        self.cv = number("dataset.cv", cv, above=0)

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        s2 = math.log1p(self.cv * self.cv)

        def sample(m: int, gen: torch.Generator) -> Tensor:
            return torch.exp(math.sqrt(s2) * torch.randn(m, n_neurons, generator=gen, dtype=torch.float64) - s2 / 2)

        return PatternSet(sample(n_patterns, generator), "graded", sample)


class _Table(PatternSource):
    """Patterns picked (seeded) from the rows of a fixed (rows, N) array; random states are entry-shuffled rows."""

    table: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.table.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.table.shape[0])

    def draw(self, n_patterns: int, n_neurons: int, generator: torch.Generator) -> PatternSet:
        rows, cols = self.table.shape
        data = torch.as_tensor(self.table, dtype=torch.float64)
        pick = torch.randperm(rows, generator=generator)[:n_patterns]

        def sample(m: int, gen: torch.Generator) -> Tensor:
            source = data[torch.randint(0, rows, (m,), generator=gen)]
            return torch.gather(source, 1, torch.rand(m, cols, generator=gen).argsort(-1))

        level = float(data.mean()) if self.kind == "binary" else None
        return PatternSet(data[pick], self.kind, sample, level)


@DATASETS.register("digits")
class Digits(_Table):
    """scikit-learn's bundled 8×8 handwritten digits (1797 images, 64 pixels, values 0..16; no download).

    ``mode=binarised``: ±1 by ``threshold``; ``mode=graded``: pixel/16 in [0, 1].
    """

    name = "digits"

    def __init__(self, *, mode: str = "binarised", threshold: float = 8.0) -> None:
        self.mode = choice("dataset.mode", mode, ["binarised", "graded"])
        self.threshold = number("dataset.threshold", threshold, at_least=0, at_most=16)
        self.kind = "bipolar" if mode == "binarised" else "graded"

    @cached_property
    def table(self) -> np.ndarray:  # type: ignore[override]
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

        images = load_digits().data
        return np.where(images > self.threshold, 1.0, -1.0) if self.mode == "binarised" else images / 16.0

    @property
    def n_features(self) -> int:
        return 64

    @property
    def n_rows(self) -> int:
        return 1797


@DATASETS.register("npz")
class Npz(_Table):
    """Patterns from a user's .npz file: array ``key`` (default: the first) of shape (rows, N), finite numbers.

    The file is read and checked when the option is built, so a bad file is reported before any compute.
    """

    name = "npz"

    def __init__(self, *, path: str = "", key: str | None = None, kind: str = "graded") -> None:
        self.kind = str(choice("dataset.kind", kind, KINDS))
        file = Path(str(path)).expanduser()
        if not path or not file.is_file():
            raise ConfigError("dataset.path", path, "no such .npz file")
        try:
            with np.load(file, allow_pickle=False) as archive:
                names = list(archive.files)
                if not names:
                    raise ConfigError("dataset.path", path, "the .npz file holds no array")
                if key is not None and key not in names:
                    raise ConfigError("dataset.key", key, f"not an array in {file.name}", allowed=names)
                raw = archive[key or names[0]]
        except (OSError, ValueError) as err:
            raise ConfigError("dataset.path", path, f"not a readable .npz file ({err})") from None
        name = key or names[0]
        if raw.ndim != 2 or 0 in raw.shape:
            raise ConfigError("dataset.key", name, f"array has shape {raw.shape}, expected (P, N) with P, N ≥ 1")
        if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_):
            raise ConfigError("dataset.key", name, f"array has dtype {raw.dtype}, expected numbers")
        table = raw.astype(np.float64)
        if not np.isfinite(table).all():
            bad = int((~np.isfinite(table)).sum())
            raise ConfigError("dataset.path", path, f"array {name!r} holds {bad} non-finite values (NaN or inf)")
        self.path, self.key, self.table = str(path), key, table


def build_dataset(name: str, params: dict | None, *, n_patterns: int, n_neurons: int,
                  generator: torch.Generator) -> PatternSet:
    """Draw P patterns of N neurons from the dataset ``name`` built with ``params`` (a convenience)."""
    source = DATASETS.build(name, params)
    source.check(n_patterns, n_neurons)
    return source.draw(n_patterns, n_neurons, generator)


# corruptions --------------------------------------------------------------------------------------------
class Corruption:
    """A config-group option of ``cue``: how a cue a₀ is made from a stored pattern (in activity space)."""

    name: str = ""
    #: pattern kinds the corruption applies to
    kinds: tuple[str, ...] = KINDS

    def check_kind(self, kind: str) -> None:
        """A ConfigError when the corruption does not apply to patterns of ``kind``."""
        if kind not in self.kinds:
            others = [n for n in CUES if kind in CUES.get(n).kinds]
            wanted = "binary (±1 or {0,1})" if set(self.kinds) == {"bipolar", "binary"} else " or ".join(self.kinds)
            raise ConfigError("cue", self.name, f"needs {wanted} patterns; the dataset's are {kind}", allowed=others)

    def apply(self, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
        """Corrupted copies (B, N) of ``targets`` (B, N) (CPU float64)."""
        raise NotImplementedError


CUES: Registry[Corruption] = Registry("cue")


def _pick(shape: torch.Size, level: float, gen: torch.Generator) -> Tensor:
    """A mask (B, N) with exactly round(level·N) entries per row, at random positions."""
    k = round(level * shape[-1])
    order = torch.rand(shape, generator=gen, dtype=torch.float64).argsort(-1)
    return torch.zeros(shape, dtype=torch.bool).scatter_(-1, order[..., :k], True)


@CUES.register("flip")
class Flip(Corruption):
    """Flip exactly round(level·N) signs (±1 patterns) or bits ({0,1} patterns) per cue."""

    name, kinds = "flip", ("bipolar", "binary")

    def __init__(self, *, level: float = 0.05) -> None:
        self.level = number("cue.level", level, at_least=0, at_most=1)

    def apply(self, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
        self.check_kind(kind)
        mask = _pick(targets.shape, self.level, generator)
        flipped = -targets if kind == "bipolar" else 1 - targets
        return torch.where(mask, flipped, targets)


@CUES.register("gaussian")
class GaussianNoise(Corruption):
    """Add N(0, level²·var(ξ)) noise to every entry (level relative to the pattern's standard deviation)."""

    name = "gaussian"

    def __init__(self, *, level: float = 0.1) -> None:
        self.level = number("cue.level", level, at_least=0)

    def apply(self, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
        std = targets.std(-1, keepdim=True)
        return targets + self.level * std * torch.randn(targets.shape, generator=generator, dtype=targets.dtype)


@CUES.register("mask")
class Mask(Corruption):
    """Set exactly round(level·N) entries per cue to 0 (``fill=zero``) or to the pattern's mean (``mean``)."""

    name = "mask"

    def __init__(self, *, level: float = 0.2, fill: str = "zero") -> None:
        self.level = number("cue.level", level, at_least=0, at_most=1)
        self.fill = choice("cue.fill", fill, ["zero", "mean"])

    def apply(self, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
        m = _pick(targets.shape, self.level, generator)
        fill = targets.mean(-1, keepdim=True).expand_as(targets) if self.fill == "mean" else torch.zeros_like(targets)
        return torch.where(m, fill, targets)


def corrupt(name: str, params: dict | None, targets: Tensor, kind: str, generator: torch.Generator) -> Tensor:
    """Corrupted copies (B, N) of ``targets`` (B, N) by the cue ``name`` built with ``params`` (a convenience)."""
    return CUES.build(name, params).apply(targets, kind, generator)
