"""Capacity: the largest load P/N with retrieval accuracy ≥ level (docs/design.md §5.2), without absurd loads.

:func:`search` grows P geometrically from ``p_min`` (P ← max(P + 1, ⌊growth·P⌋), capped at ``p_max``) until a
load fails, then bisects between the last load that passed and the first that failed. It never evaluates a
load above the first failing one, which is at most ``growth`` times the smallest failing load (for accuracy
that falls with load). A bisection over [1, N] instead starts at P = N and N/2, where cues wander until the
solver's t_max.

Each load is evaluated in batches of cues and stops as soon as its outcome is decided. With T cues in all, the
load passes when its accuracy S/T ≥ level, i.e. when S ≥ need, the least integer with need/T ≥ level. After
S successes among the cues evaluated, with n cues left, the load surely passes once S ≥ need and surely fails
once S + n < need: the verdict is exactly that of evaluating every cue, not a statistical test. A passing load
needs about a ``level`` share of its cues; a failing one stops after about (1 − level)·T failures, which makes
the loads beyond capacity (slow, unconverged trajectories) cheap. Batch sizes (:func:`next_batch`) start at
the fewest cues that could decide and then follow the observed rates; they change the cost, never the verdict.

The result keeps every evaluated load with the cues actually used. α_c = (largest passing P)/N is exact; the
interpolated value uses the accuracies over the cues used at the two loads of the final bracket (an estimate:
cues are interleaved over the patterns, so the cues used cover them evenly). Like any bisection, the search
assumes accuracy falls with load: it returns a P that passes with P + 1 failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopbench.analysis.metrics import make_cues, retrieve
from hopbench.core.data import Corruption
from hopbench.core.system import System
from hopbench.errors import number
from hopbench.solve import STATUSES, SolverConfig

__all__ = ["Capacity", "CapacityConfig", "LoadPoint", "RetrievalTrial", "Trial", "needed", "next_batch", "search"]

#: ``trial(P)`` -> (T, take): the number of cues of load P, and ``take(k)`` -> the success flags (bool, (k,))
#: of its next k cues; the search takes cues until the load is decided
Trial = Callable[[int], tuple[int, Callable[[int], Tensor]]]
#: ``progress(P, cues_used, cues_total, bracket)`` after every batch; bracket = (last pass, first fail), None
#: where not known yet
Progress = Callable[[int, int, int, tuple[int | None, int | None]], None]


@dataclass(frozen=True)
class CapacityConfig:
    level: float = 0.9  # a load passes when retrieval accuracy ≥ level
    p_min: int = 1  # the first load evaluated
    p_max: int | None = None  # the largest load evaluated (None: N)
    growth: float = 2.0  # geometric factor of the search for a failing load
    chunk: int = 256  # cues per integration batch at most

    def __post_init__(self) -> None:
        number("task.level", self.level, above=0, at_most=1)
        number("task.p_min", self.p_min, at_least=1, integer=True)
        if self.p_max is not None:
            number("task.p_max", self.p_max, at_least=self.p_min, integer=True)
        number("task.growth", self.growth, above=1)
        number("task.chunk", self.chunk, at_least=1, integer=True)


@dataclass(frozen=True)
class LoadPoint:
    """One evaluated load: S successes among the cues used, of T in all."""

    n_patterns: int
    passed: bool
    successes: int
    cues_used: int
    cues_total: int

    @property
    def accuracy(self) -> float:
        """Accuracy over the cues used (= the load's accuracy when all were used)."""
        return self.successes / self.cues_used

    @property
    def accuracy_bounds(self) -> tuple[float, float]:
        """The load's accuracy over all T cues lies in this interval."""
        left = self.cues_total - self.cues_used
        return self.successes / self.cues_total, (self.successes + left) / self.cues_total


@dataclass
class Capacity:
    n_neurons: int
    level: float
    alpha: float | None = None  # largest passing P / N
    alpha_interpolated: float | None = None
    bracket: tuple[int, int] | None = None  # (largest passing P, smallest failing P) of the final bisection
    note: str | None = None
    points: list[LoadPoint] = field(default_factory=list)  # in the order evaluated

    @property
    def cues_used(self) -> int:
        return sum(p.cues_used for p in self.points)


def needed(total: int, level: float) -> int:
    """The least number of successes S with S / total ≥ level (the comparison a full evaluation makes)."""
    need = min(total, max(0, math.ceil(level * total)))
    while need > 0 and (need - 1) / total >= level:
        need -= 1
    while need < total and need / total < level:
        need += 1
    return need


def next_batch(successes: int, used: int, total: int, need: int, cap: int) -> int:
    """How many cues to take next: the fewest that could decide the load (all of them failing, or all
    succeeding), or, once some are seen, about as many as the observed rates say the likelier verdict needs
    (+20 %); at most ``cap`` and what is left. Only the batching depends on this, never the verdict."""
    to_fail = (total - need + 1) - (used - successes)  # more failures that decide a fail
    to_pass = need - successes  # more successes that decide a pass
    k = min(to_fail, to_pass)
    if used:
        rate_s, rate_f = successes / used, 1 - successes / used
        likely = min(to_pass / rate_s if rate_s else float("inf"), to_fail / rate_f if rate_f else float("inf"))
        k = max(k, math.ceil(1.2 * likely))
    return max(1, min(k, cap, total - used))


def _evaluate(trial: Trial, P: int, level: float, cap: int, bracket: tuple[int | None, int | None],
              progress: Progress | None) -> LoadPoint:
    total, take = trial(P)
    need = needed(total, level)
    successes = used = 0
    while used < total and need > successes >= need - (total - used):  # not decided yet
        flags = take(next_batch(successes, used, total, need, cap))
        if flags.numel() == 0:
            raise ValueError(f"the trial at P = {P} ran out of cues after {used} of {total}")
        successes += int(flags.sum())
        used += int(flags.numel())
        if progress is not None:
            progress(P, used, total, bracket)
    return LoadPoint(P, successes >= need, successes, used, total)


def search(trial: Trial, *, n_neurons: int, config: CapacityConfig | None = None,
           progress: Progress | None = None) -> Capacity:
    """Largest P in [p_min, p_max] with accuracy ≥ level: geometric growth, then bisection (module docstring)."""
    cfg = config or CapacityConfig()
    p_max = n_neurons if cfg.p_max is None else cfg.p_max
    number("task.p_min", cfg.p_min, at_most=p_max, integer=True)  # p_max None: the network's N
    result = Capacity(n_neurons, cfg.level)
    outcome: dict[int, LoadPoint] = {}
    lo: int | None = None
    hi: int | None = None

    def passes(P: int) -> bool:
        point = _evaluate(trial, P, cfg.level, cfg.chunk, (lo, hi), progress)
        outcome[P] = point
        result.points.append(point)
        return point.passed

    P = cfg.p_min
    while hi is None:
        if passes(P):
            lo = P
            if p_max <= P:
                break
            P = min(p_max, max(P + 1, math.floor(cfg.growth * P)))
        else:
            hi = P
    if lo is None:
        result.note = f"accuracy < {cfg.level} already at P = {P}"
        return result
    if hi is None:
        result.alpha = lo / n_neurons
        result.note = f"lower bound: accuracy ≥ {cfg.level} up to P = {lo} (p_max)"
        return result
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            lo = mid
        else:
            hi = mid
    result.alpha, result.bracket = lo / n_neurons, (lo, hi)
    a_lo, a_hi = outcome[lo].accuracy, outcome[hi].accuracy
    share = (a_lo - cfg.level) / (a_lo - a_hi) if a_lo > a_hi else 0.0
    result.alpha_interpolated = (lo + min(1.0, max(0.0, share)) * (hi - lo)) / n_neurons
    return result


class RetrievalTrial:
    """A :data:`Trial` from retrieval (docs/design.md §5.1) on ``system_for(P)``: the load's cues (those that
    ``retrieval`` makes: ``n_cues`` per pattern), interleaved over the patterns (the c-th cue of every pattern,
    then the (c+1)-th, …) and integrated as many at a time as asked. ``stats[P]`` sums the evaluated cues'
    outcomes (:meth:`summary` turns them into metrics)."""

    def __init__(self, system_for: Callable[[int], System], cue: Corruption, solver: SolverConfig, *,
                 n_cues: int, threshold: float) -> None:
        self.system_for, self.cue, self.solver = system_for, cue, solver
        self.n_cues, self.threshold = n_cues, threshold
        self.stats: dict[int, dict[str, float]] = {}

    def __call__(self, P: int) -> tuple[int, Callable[[int], Tensor]]:
        system = self.system_for(P)
        index, cues = make_cues(system, self.cue, self.n_cues)
        order = torch.arange(index.shape[0]).view(-1, self.n_cues).T.reshape(-1)  # round c: every pattern's c-th
        index, cues = index[order], cues[order]
        stats = self.stats.setdefault(P, dict.fromkeys(("cues", "successes", "nearest", "overlap_sum",
                                                        "overlap_finite", *STATUSES), 0.0))

        def take(k: int) -> Tensor:
            part = slice(int(stats["cues"]), int(stats["cues"]) + k)
            if part.start >= index.shape[0]:
                return torch.zeros(0, dtype=torch.bool)
            traj, out = retrieve(system, system.model, index[part], cues[part], self.solver, threshold=self.threshold)
            finite = torch.isfinite(out["overlap"])
            stats["cues"] += len(traj.status)
            stats["successes"] += int(out["success"].sum())
            stats["nearest"] += int(out["nearest_ok"].sum())
            stats["overlap_sum"] += float(out["overlap"][finite].sum())
            stats["overlap_finite"] += int(finite.sum())
            for name, count in traj.counts().items():
                stats[name] += count
            return out["success"]

        return index.shape[0], take

    def summary(self, P: int) -> dict[str, float | None]:
        """Metrics of load P over the cues evaluated (names as in ``retrieval``)."""
        s = self.stats[P]
        n = s["cues"]
        return {"retrieval_accuracy": s["successes"] / n, "nearest_accuracy": s["nearest"] / n,
                "mean_overlap": s["overlap_sum"] / s["overlap_finite"] if s["overlap_finite"] else None,
                **{f"{status}_fraction": s[status] / n for status in STATUSES}}
