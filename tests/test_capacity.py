"""The capacity search (geometric growth, bisection, exact early decisions) against exhaustive bisection."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from hopbench.analysis.capacity import CapacityConfig, RetrievalTrial, needed, next_batch, search
from hopbench.analysis.metrics import retrieval
from hopbench.app.compose import compose
from hopbench.core.data import Flip
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig
from tests.conftest import DEVICE, run_inprocess


def exhaustive_bisection(accuracy, n: int, level: float) -> int | None:
    """The bisection over [1, N] on full accuracies (what task=capacity did before): largest P that passes."""
    lo, hi = 1, n
    if accuracy(lo) < level:
        return None
    if accuracy(hi) >= level:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if accuracy(mid) >= level else (lo, mid)
    return lo


class TableTrial:
    """Per-cue success flags per load, served in order; counts the cues handed out."""

    def __init__(self, flags: dict[int, torch.Tensor]) -> None:
        self.flags, self.served, self.largest = flags, {}, 0

    def __call__(self, P: int):
        f = self.flags[P]
        self.served[P] = 0

        def take(k: int) -> torch.Tensor:
            start, self.largest = self.served[P], max(self.largest, k)
            self.served[P] = min(f.numel(), start + k)
            return f[start:start + k]

        return f.numel(), take


def synthetic(n: int, seed: int, cues: int = 10) -> dict[int, torch.Tensor]:
    """Success flags whose rate falls with P (a noisy logistic drop around a random load)."""
    gen = torch.Generator().manual_seed(seed)
    centre = float(torch.rand((), generator=gen)) * 0.6 * n
    flags = {}
    for P in range(1, n + 1):
        rate = 1 / (1 + math.exp((P - centre) / (0.04 * n)))
        flags[P] = torch.rand(P * cues, generator=gen) < rate
    return flags


def test_needed_is_the_least_passing_count() -> None:
    for total in range(1, 80):
        for level in (0.0001, 0.5, 0.9, 0.95, 0.9999, 1.0):
            brute = next(s for s in range(total + 1) if s / total >= level)
            assert needed(total, level) == brute


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", [0.5, 0.9])
def test_search_finds_the_exhaustive_answer_on_synthetic_curves(seed: int, level: float) -> None:
    n = 120
    flags = synthetic(n, seed)
    acc = {P: float(f.double().mean()) for P, f in flags.items()}
    trial = TableTrial(flags)
    result = search(trial, n_neurons=n, config=CapacityConfig(level=level, chunk=7))
    expected = exhaustive_bisection(acc.__getitem__, n, level)
    if result.bracket is None:  # the first load already fails
        assert expected is None and result.alpha is None and [p.n_patterns for p in result.points] == [1]
        return
    lo, hi = result.bracket
    assert acc[lo] >= level > acc[hi] and hi == lo + 1  # a true crossing
    if expected is not None and all(acc[P] >= level for P in range(1, expected + 1)):  # monotone up to it
        assert result.alpha == expected / n
    for point in result.points:  # the early decision is the full one, and the cues counted are those served
        assert point.passed == (acc[point.n_patterns] >= level)
        assert point.cues_used == trial.served[point.n_patterns]
        lower, upper = point.accuracy_bounds
        assert lower <= acc[point.n_patterns] <= upper
    first_fail = next(p.n_patterns for p in result.points if not p.passed)
    assert max(p.n_patterns for p in result.points) == first_fail
    smallest_fail = min(P for P in range(1, n + 1) if acc[P] < level)
    assert first_fail <= 2 * smallest_fail
    assert result.cues_used < sum(f.numel() for P, f in flags.items() if P in trial.served)
    assert trial.largest <= 7  # batches respect the chunk


def test_first_batch_is_the_fewest_cues_that_can_decide() -> None:
    assert next_batch(0, 0, 100, 90, 256) == 11  # 11 failures out of 100 fail a load that needs 90
    assert next_batch(0, 0, 100, 5, 256) == 5  # 5 successes pass a load that needs 5
    assert next_batch(0, 0, 100, 90, 8) == 8  # never above the chunk
    assert next_batch(50, 50, 100, 90, 256) == 48  # all seen succeed: the 40 successes still needed, +20 %
    assert next_batch(5, 10, 100, 90, 256) == 15  # half fail: 6 more failures decide, ~12 cues, +20 %


def test_notes_at_the_ends() -> None:
    always = {P: torch.ones(5 * P, dtype=torch.bool) for P in range(1, 41)}
    never = {P: torch.zeros(5 * P, dtype=torch.bool) for P in range(1, 41)}
    top = search(TableTrial(always), n_neurons=40, config=CapacityConfig(p_max=30, chunk=16))
    assert top.alpha == 30 / 40 and "lower bound" in top.note and top.bracket is None
    assert [p.n_patterns for p in top.points] == [1, 2, 4, 8, 16, 30]
    bottom = search(TableTrial(never), n_neurons=40, config=CapacityConfig(p_min=3))
    assert bottom.alpha is None and "already at P = 3" in bottom.note
    assert bottom.points[0].cues_used == 2  # 15 cues, 13.5 needed: 2 failures decide
    with pytest.raises(ConfigError, match=r"task\.p_min"):
        search(TableTrial(never), n_neurons=40, config=CapacityConfig(p_min=41))


@pytest.mark.parametrize(("key", "value"), [("level", 0.0), ("p_min", 0), ("p_max", 0), ("growth", 1.0),
                                            ("chunk", 0)])
def test_bad_parameters(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^task\.{key}="):
        CapacityConfig(**{"level": 0.9, "p_min": 1, key: value})


SOLVER = SolverConfig(t_max=40.0)
CUE = Flip(level=0.05)


def memory(n: int, seed: int, P: int):
    return compose(model="original", activation="tanh", activation_params={"beta": 20.0}, n_neurons=n,
                   n_patterns=P, seed=seed, device=str(DEVICE), dtype="float32")


@pytest.mark.parametrize(("seed", "level"), [(0, 0.9), (1, 0.9), (2, 0.6)])
def test_real_memories_match_exhaustive_bisection(seed: int, level: float) -> None:
    """Chunked retrieval with early decisions on Hebbian tanh memories gives the α_c of the bisection over [1, N]
    on complete retrievals, and every load's pass/fail equals that of all its cues."""
    n, n_cues = 40, 4
    full: dict[int, float] = {}

    def accuracy(P: int) -> float:
        if P not in full:
            m = retrieval(memory(n, seed, P), memory(n, seed, P).model, CUE, SOLVER, n_cues=n_cues, threshold=0.95)
            full[P] = m.scalars["retrieval_accuracy"]
        return full[P]

    trial = RetrievalTrial(lambda P: memory(n, seed, P), CUE, SOLVER, n_cues=n_cues, threshold=0.95)
    result = search(trial, n_neurons=n, config=CapacityConfig(level=level, chunk=12))
    assert result.alpha == exhaustive_bisection(accuracy, n, level) / n
    for point in result.points:
        assert point.passed == (accuracy(point.n_patterns) >= level)
        assert trial.summary(point.n_patterns)["retrieval_accuracy"] == pytest.approx(point.accuracy)
    assert any(p.cues_used < p.cues_total for p in result.points)  # some load was decided early


def test_capacity_task_writes_every_point(tmp_path: Path) -> None:
    results = run_inprocess(["task=capacity", "n_neurons=40", "logger=none", "activation.beta=20",
                             "retrieval.n_cues=4", "task.chunk=16", "device=cpu"], tmp_path)
    assert results["status"] == "ok", results.get("error")
    table = pd.read_parquet(tmp_path / "capacity_points.parquet")
    assert {"n_patterns", "passed", "retrieval_accuracy", "cues_used", "cues_total"} <= set(table.columns)
    passing = table[table["passed"]]["n_patterns"]
    failing = table[~table["passed"]]["n_patterns"]
    assert len(passing) and len(failing) and passing.max() + 1 == failing.min()
    assert table["n_patterns"].max() <= 2 * failing.min()
    assert results["metrics"]["capacity_alpha"] == passing.max() / 40
