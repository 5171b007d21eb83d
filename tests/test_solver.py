"""Solver: statuses are right and counted, early stopping, energy traces, Newton polish, retrieval."""

from __future__ import annotations

import math

import pytest
import torch

from hopbench.core.activations import build_activation
from hopbench.core.models import build_model
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig, integrate, polish
from hopbench.threads import job_budget
from tests.conftest import DEVICE, F64, hebbian_net, randn


@pytest.fixture(params=["rows", "torchdiffeq"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every status and trace test runs on both integrators (solver.backend)."""
    return request.param


def rotation_net(k: float, theta: float) -> Network:
    """ẏ = W tanh(y) − y with W = k·rotation(θ): k cos θ > 1 gives a limit cycle around the origin."""
    W = k * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=F64)
    return Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))


def test_converging_system_reports_converged(backend: str) -> None:
    model = build_model("original", rotation_net(0.5, 0.3))
    out = integrate(model, randn(5, 2, seed=1), SolverConfig(backend=backend, tol=1e-6, atol=1e-8, rtol=1e-7))
    assert out.counts() == {"converged": 5, "max_time": 0, "diverged": 0, "stalled": 0}
    assert float(out.speed.max()) < 1e-6
    assert float(model.vector_field(out.x).abs().max()) < 1e-6


def test_limit_cycle_reports_max_time(backend: str) -> None:
    model = build_model("original", rotation_net(2.0, math.pi / 4))
    x0 = torch.tensor([[0.1, 0.0], [2.0, 1.0]], dtype=F64, device=DEVICE)
    out = integrate(model, x0, SolverConfig(backend=backend, t_max=60))
    assert out.counts() == {"converged": 0, "max_time": 2, "diverged": 0, "stalled": 0}
    assert float(out.speed.min()) > 0.1  # still moving: a cycle, not a slow approach
    assert float(out.t.min()) == 60.0


def test_too_short_horizon_reports_max_time(backend: str) -> None:
    model = build_model("original", rotation_net(0.5, 0.3))
    out = integrate(model, randn(3, 2, seed=2, scale=3.0), SolverConfig(backend=backend, t_max=0.5))
    assert out.counts()["max_time"] == 3


def test_exploding_system_reports_diverged_without_breaking_the_batch(backend: str) -> None:
    """Identity activation with W = 3I: ẏ = 2y explodes; a converging row in the same batch is unaffected."""
    W = torch.diag(torch.tensor([3.0, 0.5], dtype=F64))
    net = Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("identity"))
    model = build_model("original", net)
    x0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1e-3, 1.0]], dtype=F64, device=DEVICE)
    out = integrate(model, x0, SolverConfig(backend=backend, bound=1e4, t_max=100))
    assert out.status_names() == ["diverged", "converged", "diverged"]
    assert sum(out.counts().values()) == 3
    assert out.fraction("diverged") == pytest.approx(2 / 3)
    assert float(out.x[1].abs().max()) < 1e-3


def test_non_finite_start_is_diverged(backend: str) -> None:
    model = build_model("original", rotation_net(0.5, 0.3))
    x0 = torch.tensor([[float("nan"), 0.0], [0.1, 0.1]], dtype=F64, device=DEVICE)
    out = integrate(model, x0, SolverConfig(backend=backend))
    assert out.status_names() == ["diverged", "converged"]


def test_converged_trajectories_leave_the_batch(backend: str) -> None:
    """A trajectory that starts at a fixed point costs one evaluation; slow ones keep integrating."""
    model = build_model("original", rotation_net(0.5, 0.3))
    x0 = torch.tensor([[0.0, 0.0], [3.0, -2.0]], dtype=F64, device=DEVICE)
    out = integrate(model, x0, SolverConfig(backend=backend, tol=1e-5))
    assert out.status_names() == ["converged", "converged"]
    assert int(out.nfe[0]) == 1 and float(out.t[0]) == 0.0
    assert int(out.nfe[1]) > 20


@pytest.mark.parametrize(("method", "backend"), [("dopri5", "rows"), ("bosh3", "rows"), ("dopri5", "torchdiffeq"),
                                                  ("bosh3", "torchdiffeq"), ("rk4", "auto"), ("euler", "auto")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_methods_and_dtypes_retrieve_hebbian_patterns(method: str, backend: str, dtype: torch.dtype) -> None:
    """Hebbian ±1 patterns at α = 0.05 are recovered from 5 % flipped cues (success: overlap ≥ 0.95)."""
    N, P = 200, 10
    net, X = hebbian_net(P, N, "tanh", {"beta": 4.0})
    net = net.to(dtype=dtype)
    gen = torch.Generator().manual_seed(7)
    cues = X.repeat(3, 1).cpu()
    flips = torch.rand(cues.shape, generator=gen).argsort(-1)[:, : N // 20]
    cues = cues.scatter(-1, flips, -cues.gather(-1, flips)).to(DEVICE, dtype)
    model = build_model("original", net)
    out = integrate(model, model.initial_state(cues), SolverConfig(method=method, backend=backend, step_size=0.1))
    a = model.readout(out.x)
    target = X.repeat(3, 1).to(dtype)
    overlap = torch.nn.functional.cosine_similarity(a, target, dim=-1)
    assert out.counts()["converged"] == 3 * P
    assert float((overlap >= 0.95).double().mean()) == 1.0


def test_energy_trace_is_non_increasing_for_a_backed_pairing(backend: str) -> None:
    net, _ = hebbian_net(8, 100, "tanh", {"beta": 3.0})
    model = build_model("original", net)
    cues = randn(20, 100, seed=3).sign()
    out = integrate(model, model.initial_state(cues), SolverConfig(backend=backend), record_energy=True)
    trace = out.trace
    assert trace is not None and trace.n == 20
    assert set(trace.index.tolist()) == set(range(20))
    assert not bool(trace.increases(1e-9).any())
    # times within each trajectory are increasing
    for i in range(3):
        t = trace.t[trace.index == i]
        assert bool((t[1:] >= t[:-1]).all())


def test_energy_trace_detects_increases(backend: str) -> None:
    """Energy eq. 4 under a non-symmetric W is not a Lyapunov function: the trace catches rises."""
    gen = torch.Generator().manual_seed(3)
    W = 2.0 * torch.randn(6, 6, generator=gen, dtype=F64) / 6**0.5
    net = Network(W.to(DEVICE), torch.zeros(6, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))
    model = build_model("original", net)
    out = integrate(model, randn(50, 6, seed=4, scale=2.0), SolverConfig(backend=backend, t_max=30), record_energy=True)
    assert bool(out.trace.increases(1e-6).any())


def test_newton_polish_converges_and_stays_put() -> None:
    net, X = hebbian_net(5, 60, "tanh", {"beta": 3.0})
    model = build_model("modified", net, strategy="identity")
    rough = integrate(model, model.initial_state(X), SolverConfig(tol=1e-3)).x
    fine = polish(model, rough)
    assert bool(fine.converged.all())
    assert float(fine.residual.max()) < 1e-10
    assert float(fine.shift.max()) < 1e-2
    again = polish(model, fine.x)
    assert float(again.shift.max()) < 1e-12


def test_newton_polish_rows_are_independent() -> None:
    """A row's polish does not depend on the batch: converged rows leave, others go on (same as one at a time)."""
    net, X = hebbian_net(5, 60, "tanh", {"beta": 3.0})
    model = build_model("original", net)
    exact = polish(model, model.initial_state(X)).x
    starts = torch.cat([exact[:2], model.initial_state(X[2:]) + 0.05 * randn(3, 60, seed=8)])
    batch = polish(model, starts)
    alone = torch.cat([polish(model, starts[i:i + 1]).x for i in range(5)])
    torch.testing.assert_close(batch.x, alone, rtol=0, atol=1e-12)
    assert float(batch.shift[:2].max()) < 1e-12 and bool(batch.converged.all())


def test_newton_polish_on_relu_and_singular_jacobians() -> None:
    net, X = hebbian_net(5, 60, "relu")
    model = build_model("original", net)
    out = polish(model, model.initial_state(X))
    assert bool(out.converged.all())
    # a singular Jacobian (W = I, identity activation: every point is fixed) does not break the batch
    sing = Network(torch.eye(3, dtype=F64, device=DEVICE), torch.zeros(3, dtype=F64, device=DEVICE),
                   build_activation("identity"))
    res = polish(build_model("original", sing), randn(2, 3, seed=5))
    assert bool(res.converged.all())


def test_bad_solver_settings() -> None:
    with pytest.raises(ConfigError, match=r"solver\.method='rk45'"):
        SolverConfig(method="rk45")
    with pytest.raises(ConfigError, match=r"solver\.t_max"):
        SolverConfig(t_max=0)
    with pytest.raises(ConfigError, match=r"solver\.tol=1e-08: must be ≥ solver\.atol"):
        SolverConfig(tol=1e-8)


def test_small_problems_integrate_and_polish_on_one_thread() -> None:
    """N below threads.SMALL_PROBLEM: the solver's many tiny operations run on one thread (a second one only spins,
    and next to a busy process slows them many times); the job's budget is back afterwards."""
    net, X = hebbian_net(3, 30, "tanh")
    model = build_model("original", net)
    seen: list[int] = []
    field = model.vector_field

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return field(x)

    model.vector_field = spy  # type: ignore[method-assign]
    with job_budget(2):
        integrate(model, model.initial_state(X), SolverConfig())
        integrate(model, model.initial_state(X), SolverConfig(backend="torchdiffeq"))
        assert torch.get_num_threads() == 2
        residual = model.residual
        model.residual = lambda x: (seen.append(torch.get_num_threads()), residual(x))[1]  # type: ignore[method-assign]
        polish(model, model.initial_state(X))
        assert torch.get_num_threads() == 2
    assert seen and set(seen) == {1}
