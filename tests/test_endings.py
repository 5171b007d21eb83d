"""How trajectories end: stalls as their own status (at the stop and early), and the Newton finish of slow tails,
checked against plain integration of the same systems."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from hopbench.core.activations import build_activation
from hopbench.core.models import Model, build_model
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.solve import STATUSES, SolverConfig, Trajectories, integrate, polish
from hopbench.solve.newton import finish
from tests.conftest import DEVICE, F64, hebbian_net, randn


@pytest.fixture(params=["rows", "torchdiffeq"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_status_indices_are_fixed() -> None:
    assert STATUSES == ("converged", "max_time", "diverged", "stalled")


# stalls --------------------------------------------------------------------------------------------------------
def frozen_net() -> Network:
    """u̇ = R (tanh(Wu + b) − u) with W = diag(0.5, 0): under R = W the second neuron never moves, so the flow
    stops wherever u₂ ≠ tanh(b₂) = tanh(0.3), a state with r ≠ 0."""
    W = torch.diag(torch.tensor([0.5, 0.0], dtype=F64))
    b = torch.tensor([0.0, 0.3], dtype=F64, device=DEVICE)
    return Network(W.to(DEVICE), b, build_activation("tanh", {"beta": 1.0}))


def test_a_singular_r_stalls_and_r_identity_converges(backend: str) -> None:
    """R = W singular: the row that starts off the fixed-point set stalls (‖r‖∞ = |u₂ − tanh 0.3| there), the row
    that starts with u₂ = tanh 0.3 converges; under R = I both converge."""
    net = frozen_net()
    x0 = torch.tensor([[1.0, -0.5], [1.0, math.tanh(0.3)]], dtype=F64, device=DEVICE)
    cfg = SolverConfig(backend=backend, tol=1e-6, atol=1e-8, rtol=1e-7, early_stall=False)
    model = build_model("modified", net, strategy="w", energy="e2")
    stalled = integrate(model, x0, cfg)
    assert stalled.status_names() == ["stalled", "converged"]
    assert float(stalled.x[0, 1]) == -0.5  # frozen
    assert float(stalled.speed[0]) < cfg.tol
    assert integrate(model, x0, replace(cfg, early_stall=True)).status_names() == ["stalled", "converged"]
    plain = integrate(build_model("modified", net, strategy="identity"), x0, cfg)
    assert plain.status_names() == ["converged", "converged"]
    torch.testing.assert_close(plain.x[:, 1], torch.full((2,), math.tanh(0.3), dtype=F64, device=DEVICE))


def dead_switch_net() -> Network:
    """R = Λ(Wu + b) with ReLU: neuron 2's pre-activation h₂ = u₁ − 0.2 falls below 0 while u₁ decays to 0, after
    which Λ₂ = 0 freezes u₂ away from relu(h₂) = 0. The speed decays like e^{−0.5t}: a slow approach to a stall."""
    W = torch.tensor([[0.5, 0.0], [1.0, 0.0]], dtype=F64)
    return Network(W.to(DEVICE), torch.tensor([0.0, -0.2], dtype=F64, device=DEVICE), build_activation("relu"))


def test_early_stall_ends_the_approach_with_the_status_of_the_stop(backend: str) -> None:
    """The early rule ends the rows stalled well before their speed reaches tol; without it they end stalled
    (at the stop) or at max_time, never converged; the states agree where both stopped."""
    model = build_model("modified", dead_switch_net(), strategy="lambda", energy="e3")
    x0 = torch.tensor([[2.0, 1.0], [3.0, 0.5], [1.0, 2.0]], dtype=F64, device=DEVICE)
    cfg = SolverConfig(backend=backend, tol=1e-7, atol=1e-9, rtol=1e-8, t_max=200.0, newton_finish=False)
    early = integrate(model, x0, cfg)
    late = integrate(model, x0, replace(cfg, early_stall=False))
    assert early.status_names() == ["stalled"] * 3 == late.status_names()
    assert bool((early.speed > cfg.tol).all()) and bool((late.speed < cfg.tol).all())
    assert bool((early.nfe < late.nfe).all()) and bool((early.t < late.t).all())
    with torch.no_grad():
        rho = model.residual(early.x).abs().amax(-1)
    torch.testing.assert_close(rho, early.x[:, 1].abs(), rtol=0, atol=1e-6)  # u₂ frozen away from relu(h₂) = 0
    assert float(rho.min()) > 100 * cfg.stall_factor * cfg.tol
    torch.testing.assert_close(early.x[:, 1], late.x[:, 1], rtol=0, atol=1e-6)


def test_early_stall_leaves_converging_modified_rows_alone(backend: str) -> None:
    """Modified dynamics with R = I − WᵀΛ (which can stall) on a Hebbian memory: no row stalls, and the early rule
    changes nothing (it only reads residuals at checkpoints)."""
    net, X = hebbian_net(4, 40, "tanh", {"beta": 2.0})
    model = build_model("modified", net, strategy="i_minus_wt_lambda", energy="e3")
    x0 = model.initial_state(torch.where(randn(12, 40, seed=3) > 1.0, -X.repeat(3, 1), X.repeat(3, 1)))
    cfg = SolverConfig(backend=backend, newton_finish=False)
    early = integrate(model, x0, cfg)
    late = integrate(model, x0, replace(cfg, early_stall=False))
    assert early.counts()["converged"] >= 10 and early.counts()["stalled"] == 0
    assert torch.equal(early.status, late.status) and torch.equal(early.x, late.x)


# the Newton finish ---------------------------------------------------------------------------------------------
EAGER = SolverConfig(newton_cost=0.0)  # attempt the finish wherever the rules allow, whatever it costs


def flipped_cues(X: torch.Tensor, copies: int, level: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    cues = X.repeat(copies, 1)
    flip = (torch.rand(cues.shape, generator=gen, dtype=F64) < level).to(cues.device)
    return torch.where(flip, -cues, cues)


def assert_same_end_states(model: Model, x0: torch.Tensor, cfg: SolverConfig) -> tuple[Trajectories, Trajectories]:
    """Integrate with and without the Newton finish: every row ends at the same fixed point (the one its plain end
    state polishes to), with the same status except that former max_time rows may converge; finished rows sit
    exactly at that fixed point. With backend=rows, rows the finish did not end follow plain integration (refused
    attempts cost evaluations, nothing else; only the batch's size, which changes matmul rounding, differs;
    torchdiffeq's batch-wide steps depend on which rows are still in the batch)."""
    fast = integrate(model, x0, cfg)
    plain = integrate(model, x0, replace(cfg, newton_finish=False))
    same = fast.status == plain.status
    assert bool((same | ((plain.status == 1) & (fast.status == 0))).all())
    done = fast.newton
    assert bool((fast.status[done] == 0).all()) and bool((fast.speed[done] < cfg.tol).all())
    limit = polish(model, plain.x)
    assert bool(limit.converged[plain.status == 0].all())
    torch.testing.assert_close(fast.x[done], limit.x[done], rtol=0, atol=1e-8)
    torch.testing.assert_close(polish(model, fast.x).x[limit.converged], limit.x[limit.converged], rtol=0, atol=1e-8)
    if cfg.row_wise:
        torch.testing.assert_close(fast.x[~done], plain.x[~done], rtol=0, atol=1e-9)
    return fast, plain


@pytest.mark.parametrize("load", [0.05, 0.12])
def test_newton_finish_keeps_every_end_state_of_hebbian_memories(load: float, backend: str) -> None:
    N = 100
    net, X = hebbian_net(round(load * N), N, "tanh", {"beta": 4.0}, seed=2)
    model = build_model("original", net)
    x0 = model.initial_state(flipped_cues(X, 4, 0.1, seed=6))
    fast, plain = assert_same_end_states(model, x0, replace(EAGER, backend=backend))
    assert int(fast.newton.sum()) > 0
    assert float(fast.nfe.double().mean()) < float(plain.nfe.double().mean())


def test_newton_finish_on_the_modified_model(backend: str) -> None:
    """R = I − WᵀΛ: the fixed points of r are solved, the stability test goes through the general spectrum."""
    net, X = hebbian_net(12, 100, "tanh", {"beta": 4.0}, seed=1)
    model = build_model("modified", net, strategy="i_minus_wt_lambda", energy="e3")
    x0 = model.initial_state(flipped_cues(X, 3, 0.1, seed=2))
    fast, _ = assert_same_end_states(model, x0, replace(EAGER, backend=backend))
    assert int(fast.newton.sum()) > 0


def saddle_net() -> Network:
    """ẏ = W tanh(y) − y with W = diag(2, 0.5): a saddle at 0 (unstable along y₁), stable points (±1.915, 0)."""
    W = torch.diag(torch.tensor([2.0, 0.5], dtype=F64))
    return Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))


def test_newton_finish_refuses_a_saddle() -> None:
    """Near the saddle Newton converges to it; the spectrum test refuses, the flow goes on to a stable point."""
    model = build_model("original", saddle_net())
    x = torch.tensor([[1e-4, 2e-3], [-1e-3, -1e-2]], dtype=F64, device=DEVICE)
    out = finish(model, x, model.vector_field(x))
    assert bool(out.found.all()) and not bool(out.accepted.any())
    torch.testing.assert_close(out.x, x)
    x0 = torch.tensor([[1e-9, 3.0], [-1e-9, -4.0]], dtype=F64, device=DEVICE)  # close to the stable manifold
    fast, _ = assert_same_end_states(model, x0, EAGER)
    assert fast.status_names() == ["converged"] * 2
    torch.testing.assert_close(fast.x[:, 0].abs(), torch.full((2,), 1.9150080, dtype=F64, device=DEVICE),
                               rtol=0, atol=1e-4)
    assert float(fast.x[0, 0]) > 0 > float(fast.x[1, 0])


def _slow_linear_tails() -> tuple[Model, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model, x0 (3, 2), A, b): ẏ = A y + b, the identity activation and W = A + I with eigenvalues of A −0.01
    and −0.02."""
    A = torch.tensor([[-0.015, 0.005], [0.005, -0.015]], dtype=F64)
    b = torch.tensor([0.02, -0.01], dtype=F64)
    net = Network((A + torch.eye(2, dtype=F64)).to(DEVICE), b.to(DEVICE), build_activation("identity"))
    return build_model("original", net), randn(3, 2, seed=5, scale=3.0), A, b


def test_default_cost_finishes_slow_tails_and_resolves_t_max(backend: str) -> None:
    """ẏ = (W − I) y + b with the identity activation and eigenvalues −0.01, −0.02: plain integration still
    crawls at t_max = 200, in steps so long that its tail costs fewer evaluations than a Newton attempt; at the
    default cost the finish waits, then resolves the rows at t_max (exactly, the system being linear). With a
    larger N the same tail is worth an attempt before t_max."""
    model, x0, A, b = _slow_linear_tails()
    fast = integrate(model, x0, SolverConfig(backend=backend))
    plain = integrate(model, x0, SolverConfig(backend=backend, newton_finish=False))
    assert fast.status_names() == ["converged"] * 3 and bool(fast.newton.all())
    assert plain.status_names() == ["max_time"] * 3
    torch.testing.assert_close(fast.x, (-torch.linalg.solve(A, b)).to(DEVICE).expand(3, -1), rtol=0, atol=1e-12)
    assert bool((fast.t <= plain.t).all())  # at t_max with rows; torchdiffeq's windows cost more per unit time
    sooner = integrate(model, x0, SolverConfig(backend=backend, newton_cost=0.1))
    assert bool(sooner.newton.all()) and bool((sooner.t < 200).all()) and bool((sooner.nfe < plain.nfe).all())


@pytest.mark.parametrize(("backend", "cost"), [("rows", 2.2), ("torchdiffeq", 5.0)])
def test_no_attempt_before_t_max_that_costs_more_than_the_integration_up_to_t_max(backend: str, cost: float) -> None:
    """The slow linear tails above outlast t_max = 200 (predicted 260–520 more time units at the first steady
    checkpoint). At these attempt costs the whole predicted tail would pay for an attempt there, but the
    integration up to t_max does not, and rows still moving at t_max get an attempt anyway: the rows integrate to
    t_max and are resolved there, spending no more than plain integration and that one attempt."""
    model, x0, _, _ = _slow_linear_tails()
    cfg = SolverConfig(backend=backend, newton_cost=cost)
    fast = integrate(model, x0, cfg)
    plain = integrate(model, x0, replace(cfg, newton_finish=False))
    assert fast.status_names() == ["converged"] * 3 and bool(fast.newton.all())
    assert bool((fast.t == 200).all())
    assert bool((fast.nfe <= plain.nfe + 10).all())


def test_rows_cut_off_at_t_max_end_at_the_fixed_point_they_approach(backend: str) -> None:
    """A row still approaching its fixed point at t_max gets a last attempt (here at any cost, whatever earlier
    refusals): where accepted it ends converged at the fixed point that a 100 times longer integration reaches;
    rows still far away (‖ẋ‖∞ ≥ newton_speed, or refused) stay max_time where they are."""
    net, X = hebbian_net(6, 60, "tanh", {"beta": 3.0}, seed=4)
    model = build_model("original", net)
    x0 = model.initial_state(flipped_cues(X, 2, 0.15, seed=3))
    cfg = replace(EAGER, backend=backend, t_max=4.0)
    cut = integrate(model, x0, cfg)
    plain = integrate(model, x0, replace(cfg, newton_finish=False))
    long = integrate(model, x0, replace(cfg, newton_finish=False, t_max=400.0, tol=1e-9, atol=1e-11, rtol=1e-9))
    late = plain.status == 1
    assert int(late.sum()) > 0 and bool((long.status == 0).all())
    slow = late & (plain.speed < cfg.newton_speed)
    assert not bool((cut.newton & ~slow).any()) and int(cut.newton.sum()) >= int(slow.sum()) // 2
    assert bool((cut.status[cut.newton] == 0).all()) and bool((cut.status[late & ~cut.newton] == 1).all())
    torch.testing.assert_close(cut.x[~cut.newton], plain.x[~cut.newton], rtol=0, atol=1e-9)
    torch.testing.assert_close(cut.x[cut.newton], long.x[cut.newton], rtol=0, atol=1e-7)


def test_newton_finish_refuses_a_point_the_flow_is_not_heading_for() -> None:
    """Stable x* nearby, but the velocity points elsewhere (as when Newton jumps across a basin boundary): the
    linearisation at x* does not explain the velocity, so the remainder test refuses; the true velocity passes."""
    model = build_model("original", saddle_net())
    x = torch.tensor([[1.8, 0.05], [2.0, -0.05]], dtype=F64, device=DEVICE)
    v = model.vector_field(x)
    assert bool(finish(model, x, v).accepted.all())
    away = finish(model, x, -v)
    assert bool(away.found.all()) and not bool(away.accepted.any())
    sideways = finish(model, x, torch.stack([v[:, 1], -v[:, 0]], -1))
    assert not bool(sideways.accepted.any())


def test_r_identity_trajectories_are_untouched_without_the_finish(backend: str) -> None:
    """With R = I and no Newton finish, the rules add nothing: no residual evaluations, same evaluations and states
    as with early_stall off."""
    net, X = hebbian_net(6, 60, "tanh", {"beta": 3.0})
    model = build_model("original", net)
    x0 = model.initial_state(flipped_cues(X, 2, 0.1, seed=9))
    cfg = SolverConfig(backend=backend, newton_finish=False)
    a, b = integrate(model, x0, cfg), integrate(model, x0, replace(cfg, early_stall=False))
    assert torch.equal(a.x, b.x) and torch.equal(a.nfe, b.nfe) and torch.equal(a.status, b.status)


def test_bad_endings_settings() -> None:
    with pytest.raises(ConfigError, match=r"solver\.stall_factor"):
        SolverConfig(stall_factor=0.5)
    with pytest.raises(ConfigError, match=r"solver\.newton_speed"):
        SolverConfig(newton_speed=0.0)
    with pytest.raises(ConfigError, match=r"solver\.newton_cost"):
        SolverConfig(newton_cost=-1.0)
    with pytest.raises(ConfigError, match=r"solver\.newton_finish"):
        SolverConfig(newton_finish="yes")  # type: ignore[arg-type]
