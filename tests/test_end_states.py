"""The end-state taxonomy: hand-built stalls, the Hopfield 3-mixture, the zero state and a diverging flow are told
apart, each end state has exactly one class, and spurious_rate / attractor counts are over fixed points only."""

from __future__ import annotations

import math

import pytest
import torch

from hopbench import compose
from hopbench.analysis import end_states as es
from hopbench.analysis.end_states import (
    CUE_CLASSES,
    START_CLASSES,
    EndStateConfig,
    classify,
)
from hopbench.analysis.metrics import lyapunov_check, retrieval, spurious
from hopbench.core.activations import build_activation
from hopbench.core.data import Flip, PatternSet
from hopbench.core.models import build_model
from hopbench.core.network import Network
from hopbench.core.system import System
from hopbench.errors import ConfigError
from hopbench.solve import STATUSES, SolverConfig, Trajectories, integrate
from tests.conftest import DEVICE, F64, bipolar

SOLVER = SolverConfig()
#: the stall of the scalar system below: R = 1 − w g′(wu + b) = 0 at 2u + b = −acosh(√2) (w = 2, g = tanh)
B_STALL = 0.7
U_STALL = (-math.acosh(math.sqrt(2.0)) - B_STALL) / 2
R_STALL = math.tanh(2 * U_STALL + B_STALL) - U_STALL  # = B_STALL/2 − 0.2664 > 0: no fixed point there


def system_of(W: torch.Tensor, b: torch.Tensor, patterns: torch.Tensor, model: str, activation: str = "tanh",
              params: dict | None = None, kind: str = "bipolar") -> System:
    params = {"beta": 1.0} if params is None and activation == "tanh" else params
    net = Network(W.to(DEVICE, F64), b.to(DEVICE, F64), build_activation(activation, params))
    strategy = "i_minus_wt_lambda" if model == "modified" else "identity"
    data = PatternSet(patterns.double().cpu(), kind, lambda m, gen: torch.zeros(m, patterns.shape[1]))
    return System(data, net, build_model(model, net, strategy=strategy, energy="auto"), seed=0)


def run(system: System, a0: torch.Tensor, solver: SolverConfig = SOLVER) -> Trajectories:
    return integrate(system.model, system.model.initial_state(a0.to(DEVICE, F64)), solver)


def stall_system() -> System:
    """Two uncoupled neurons u̇ᵢ = (1 − 2 sech²(2uᵢ + b))(tanh(2uᵢ + b) − uᵢ) (eq. 9 with R = I − WᵀΛ): the flow is
    the gradient flow of ½‖r‖², whose only zero is uᵢ ≈ 0.99 and which has a local minimum r = R_STALL > 0 at
    U_STALL, where R is singular."""
    return system_of(2 * torch.eye(2), torch.full((2,), B_STALL), torch.ones(1, 2), "modified")


def test_stall_at_a_singular_R_is_no_fixed_point() -> None:
    system = stall_system()
    traj = run(system, torch.tensor([[-1.5, -1.2], [0.5, 0.3], [-1.5, 0.3]]))
    ends = classify(system, system.model, traj, SOLVER, threshold=0.95)
    assert ends.names() == ["stall", "memory", "stall"]
    # independent: the flow stopped at the closed-form point where R = 0, with the closed-form residual
    x = traj.x.double().cpu()
    assert torch.allclose(x[0], torch.full((2,), U_STALL, dtype=F64), atol=1e-3)
    assert ends.residual[0].item() == pytest.approx(R_STALL, rel=1e-2)
    assert math.isnan(ends.polish_residual[0].item())  # a stall by its residual is never polished
    # the fixed point: tanh(2u + b) = u, solved by bisection here
    lo, hi = 0.5, 1.5
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.tanh(2 * mid + B_STALL) > mid else (lo, mid)
    assert torch.allclose(ends.activity[1], torch.full((2,), lo, dtype=F64), atol=1e-9)
    assert ends.polish_residual[1].item() <= 1e-10


def test_a_reported_stalled_status_is_a_stall_and_an_unknown_status_is_an_error(monkeypatch) -> None:
    """The solver may report ``stalled`` itself: that status decides, even where the residual test would pass."""
    system = stall_system()
    traj = run(system, torch.tensor([[0.5, 0.3], [0.5, 0.3]]))
    monkeypatch.setattr(es, "STATUSES", (*STATUSES, "stalled") if "stalled" not in STATUSES else STATUSES)
    traj.status = torch.tensor([0, es.STATUSES.index("stalled")])
    assert classify(system, system.model, traj, SOLVER, threshold=0.95).names() == ["memory", "stall"]
    monkeypatch.setattr(es, "STATUSES", (*es.STATUSES, "wobbling"))
    with pytest.raises(ValueError, match="'wobbling' has no end-state class"):
        classify(system, system.model, traj, SOLVER, threshold=0.95)


def hebbian(P: int, N: int, beta: float, model: str = "original", seed: int = 0) -> System:
    X = bipolar(P, N, seed)
    W = X.T @ X / N
    W.fill_diagonal_(0.0)
    return system_of(W, torch.zeros(N), X, model, params={"beta": beta})


def test_symmetric_three_mixture_is_spurious_and_the_patterns_are_memories() -> None:
    """sign(ξ¹ + ξ² + ξ³) is a stable fixed point of a Hebbian memory with overlaps ½ with each pattern (Amit,
    Gutfreund & Sompolinsky): spurious. The stored patterns are retrieved, or another pattern for another target."""
    system = hebbian(3, 300, beta=10.0)
    X = system.data.patterns
    mix = torch.sign(X.sum(0))
    starts = torch.stack([mix, -mix, X[0], X[1], -X[0]])
    traj = run(system, starts)
    assert classify(system, system.model, traj, SOLVER, threshold=0.95).names() == [
        "spurious", "spurious", "memory", "memory", "memory"]
    ends = classify(system, system.model, traj, SOLVER, threshold=0.95, targets=torch.tensor([0, 0, 0, 0, 0]))
    assert ends.names() == ["spurious", "spurious", "retrieved", "other_pattern", "other_pattern"]
    # independent: the end state is the mixture, and y* = W a* (b = 0) gives back a* = tanh(β y*)
    a = ends.activity[0]
    assert torch.nn.functional.cosine_similarity(a, mix, dim=0) > 0.99
    assert (torch.tanh(10.0 * (system.net.W.cpu() @ a)) - a).abs().max() < 1e-9
    assert (X @ a / (a.norm() * X.norm(dim=-1))).abs().max() < 0.6  # no stored pattern
    # ±mixture are two attractors; noisy starts around them do not add more
    noisy = torch.cat([mix * torch.where(torch.rand(4, 300, generator=torch.Generator().manual_seed(1)) < 0.03, -1, 1),
                       -mix.unsqueeze(0)])
    ends2 = classify(system, system.model, run(system, noisy), SOLVER, threshold=0.95)
    assert ends2.names() == ["spurious"] * 5
    labels = ends2.attractors(EndStateConfig())
    assert len(set(labels.tolist())) == 2 and labels[0] == labels[1] == labels[2] == labels[3] != labels[4]


def test_zero_state_is_trivial_and_one_attractor_however_it_is_approached() -> None:
    """With β = 0.5 the zero state is the only fixed point and attracts everything (W's eigenvalues ≲ 1 at P ≪ N)."""
    system = hebbian(3, 60, beta=0.5)
    starts = bipolar(6, 60, seed=5)
    traj = run(system, starts)
    ends = classify(system, system.model, traj, SOLVER, threshold=0.95)
    assert ends.names() == ["trivial"] * 6
    assert ends.activity.abs().max() < 1e-12  # polished to the exact zero
    assert traj.x.abs().max() > 1e-9  # while the flow itself stopped near, not at, zero: noise of every direction
    labels = ends.attractors(EndStateConfig())
    assert set(labels.tolist()) == {0}


def test_diverged_and_max_time_come_from_the_status() -> None:
    identity = system_of(2 * torch.eye(3), torch.zeros(3), torch.ones(1, 3), "original", activation="identity")
    ends = classify(identity, identity.model, run(identity, torch.ones(2, 3)), SOLVER, threshold=0.95)
    assert ends.names() == ["diverged", "diverged"]  # ẏ = y grows past the bound
    slow = hebbian(3, 60, beta=0.5)
    short = SolverConfig(t_max=0.2)
    ends = classify(slow, slow.model, run(slow, bipolar(2, 60, seed=5), short), short, threshold=0.95,
                    targets=torch.tensor([0, 1]))
    assert ends.names() == ["max_time", "max_time"]


def small_modified() -> System:
    return compose(model="modified", strategy="i_minus_wt_lambda", energy="auto", activation="tanh",
                   activation_params={"beta": 4.0}, n_neurons=40, n_patterns=2, seed=0, device=str(DEVICE),
                   dtype="float32")


def test_measurements_classify_every_item_and_rates_use_fixed_points_only() -> None:
    system = small_modified()
    cue = Flip(level=0.1)
    cfg = EndStateConfig()
    ret = retrieval(system, system.model, cue, SOLVER, n_cues=5, threshold=0.95, record_energy=True, end_states=cfg)
    spu = spurious(system, system.model, SOLVER, n_states=60, threshold=0.95, end_states=cfg)
    for prefix, m, classes, table in (("retrieval", ret, CUE_CLASSES, "retrieval"),
                                      ("random", spu, START_CLASSES, "spurious")):
        frame = m.tables[table]
        counts = m.scalars[f"{prefix}_end_state_counts"]
        assert list(counts) == list(classes)
        assert sum(counts.values()) == len(frame)
        assert sum(m.scalars[f"{prefix}_{c}_fraction"] for c in classes) == pytest.approx(1.0, abs=1e-12)
        assert frame["end_state"].value_counts().reindex(list(classes), fill_value=0).to_dict() == counts
        fixed = frame["end_state"].isin(["retrieved", "other_pattern", "memory", "spurious", "trivial"])
        assert (frame.loc[fixed, "polish_residual"] <= 1e-10).all()
        stalls = frame["end_state"] == "stall"
        assert (stalls & (frame["status"] == "converged")).sum() == (
            stalls & ((frame["residual"] > 100 * SOLVER.tol) | (frame["polish_residual"] > 1e-10))).sum()
    frame = spu.tables["spurious"]
    n = frame["end_state"].value_counts()
    n_fixed = sum(n.get(c, 0) for c in ("memory", "spurious", "trivial"))
    assert n_fixed > 0
    assert spu.scalars["spurious_rate"] == pytest.approx(n.get("spurious", 0) / n_fixed)
    assert spu.scalars["n_spurious_attractors"] == frame.loc[frame["end_state"] == "spurious", "attractor"].nunique()
    assert (frame.loc[frame["end_state"] == "trivial", "relative_norm"] <= cfg.trivial_tol).all()
    lyap = lyapunov_check(system, system.model, cue, SOLVER, n_states=12, tol=1e-6, trace_rtol=1e-4, threshold=0.95,
                          trajectories=ret.extras["trajectories"], end_states=ret.extras["end_states"])
    assert lyap.scalars["lyapunov_end_state_counts"] == ret.scalars["retrieval_end_state_counts"]
    assert list(lyap.tables["lyapunov_trajectories"]["end_state"]) == list(ret.tables["retrieval"]["end_state"])
    with pytest.raises(ValueError, match="together"):
        lyapunov_check(system, system.model, cue, SOLVER, n_states=12, tol=1e-6, trace_rtol=1e-4, threshold=0.95,
                       trajectories=ret.extras["trajectories"])


@pytest.mark.parametrize("key", ["fixed_point_tol", "trivial_tol", "cluster_distance"])
def test_bad_tolerances_are_config_errors(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^end_states\.{key}=-1(\.0)?: must be a number"):
        EndStateConfig(**{key: -1.0})
