"""The Rosenbrock-W method for stiff systems (solver.method=ros34pw2): order, accuracy against closed forms and
reference solutions, and its settings."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch
from torchdiffeq import odeint

from hopbench import compose
from hopbench.analysis.metrics import _along_trajectories
from hopbench.app.cli import preflight
from hopbench.core.activations import build_activation
from hopbench.core.models import Model, build_model
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig, integrate
from hopbench.solve.runge_kutta import ROSENBROCK, _rosenbrock_step
from tests.conftest import DEVICE, F64, randn

TAB = ROSENBROCK["ros34pw2"]


def test_tableau_is_consistent() -> None:
    """Row sums of the weights: Σ b = Σ b̂ = 1 (order 1 for any A) and the method is stiffly accurate (the last
    stage's α + γ row is b, so R(∞) = 0)."""
    assert sum(TAB.b) == pytest.approx(1.0, abs=1e-14) and sum(TAB.b_hat) == pytest.approx(1.0, abs=1e-14)
    last = [a + g for a, g in zip(TAB.alpha[-1], TAB.gammas[-1], strict=True)] + [TAB.gamma]
    assert last == pytest.approx(list(TAB.b), abs=1e-14)


def stiff_linear(eigenvalues: tuple[float, ...], seed: int = 0) -> tuple[Model, torch.Tensor, torch.Tensor]:
    """ẏ = (W − I) y + b with the identity activation: a linear system whose matrix A = W − I has the given
    eigenvalues (orthogonal eigenvectors). Returns the model, A and the fixed point y* = −A⁻¹b."""
    gen = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    A = Q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ Q.T
    b = torch.randn(n, generator=gen, dtype=F64)
    net = Network((A + torch.eye(n, dtype=F64)).to(DEVICE), b.to(DEVICE), build_activation("identity"))
    return build_model("original", net), A.to(DEVICE), -torch.linalg.solve(A, b).to(DEVICE)


def test_stiff_linear_system_matches_its_closed_form_in_few_steps() -> None:
    """Eigenvalues −1, −30, −3000: y(t) = y* + exp(At)(y₀ − y*) at t = 3 to the requested accuracy; at the
    default tolerances with ten times fewer evaluations than dopri5, whose steps the −3000 mode holds below
    3.3/3000 whatever the accuracy asked."""
    model, A, y_star = stiff_linear((-1.0, -30.0, -3000.0))
    y0 = randn(4, 3, seed=2, scale=2.0)
    exact = y_star + (y0 - y_star) @ torch.linalg.matrix_exp(3.0 * A).T
    for rtol, atol in ((1e-8, 1e-10), (1e-5, 1e-6)):
        cfg = SolverConfig(method="ros34pw2", rtol=rtol, atol=atol, tol=atol, t_max=3.0, newton_finish=False)
        out = integrate(model, y0, cfg)
        assert out.status_names() == ["max_time"] * 4
        torch.testing.assert_close(out.x, exact, rtol=0, atol=100 * atol)
    explicit = integrate(model, y0, replace(cfg, method="dopri5"))
    torch.testing.assert_close(explicit.x, exact, rtol=0, atol=100 * atol)
    assert float(explicit.nfe.double().mean()) > 10 * float(out.nfe.double().mean())


class FrozenJacobian:
    """The model's vector field with a chosen matrix A in place of its Jacobian (a W-method tolerates any A)."""

    def __init__(self, model: Model, A: torch.Tensor | None) -> None:
        self.model, self.A = model, A

    def vector_field(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.vector_field(x)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        if self.A is None:  # the exact Jacobian of the vector field, by autograd
            return torch.vmap(torch.func.jacrev(lambda v: self.model.vector_field(v.unsqueeze(0))[0]))(x)
        return self.A.expand(x.shape[0], -1, -1)


@pytest.mark.parametrize("matrix", ["exact", "zero", "wrong"])
def test_w_method_keeps_order_three_with_any_jacobian(matrix: str) -> None:
    """One step on a nonlinear (tanh, non-symmetric W) system: the local error of y₁ shrinks like h⁴ (order 3)
    and the embedded estimate like h³, whether A is the exact Jacobian, zero or an unrelated matrix."""
    gen = torch.Generator().manual_seed(5)
    W = 1.5 * torch.randn(4, 4, generator=gen, dtype=F64)
    net = Network(W.to(DEVICE), 0.2 * torch.ones(4, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))
    model = build_model("original", net)
    A = {"exact": None, "zero": torch.zeros(4, 4, dtype=F64, device=DEVICE),
         "wrong": randn(4, 4, seed=9)}[matrix]
    shim = FrozenJacobian(model, A)
    y = randn(1, 4, seed=3)
    f = model.vector_field(y)
    errors, estimates = [], []
    for h in (0.04, 0.02, 0.01):
        y1, f1, err = _rosenbrock_step(TAB, shim, y, f, torch.full((1, 1), h, dtype=F64, device=DEVICE))
        ref = odeint(lambda _, x: model.vector_field(x), y, torch.tensor([0.0, h], dtype=F64, device=DEVICE),
                     method="dopri5", rtol=1e-13, atol=1e-15)[-1]
        torch.testing.assert_close(f1, model.vector_field(y1))
        errors.append(float((y1 - ref).norm()))
        estimates.append(float(err.norm()))
    for coarse, fine in itertools.pairwise(errors):
        assert 2**4 * 0.7 < coarse / fine < 2**4 * 1.4
    for coarse, fine in itertools.pairwise(estimates):
        assert 2**3 * 0.7 < coarse / fine < 2**3 * 1.4


def stall_system() -> tuple[Model, torch.Tensor]:
    """The 6-neuron Lyapunov-check system of the command line (modified_y, R = I − ΛWᵀ, GOE σ = 5, tanh β = 4,
    float64) and the start from its stored pattern: the Jacobian has an eigenvalue near −900 and the flow runs
    into a stall (r ≈ 0.3 ≠ 0)."""
    system = compose(model="modified_y", strategy="y_i_minus_lambda_wt", activation="tanh",
                     activation_params={"beta": 4.0}, weights="goe", weights_params={"sigma": 5.0}, n_neurons=6,
                     load=0.05, device=str(DEVICE), dtype="float64")
    return system.model, system.model.initial_state(system.data.patterns[:1].to(DEVICE, F64))


def test_ros34pw2_follows_a_stiff_model_to_a_reference_solution() -> None:
    """On the stall system, states at t = 5 and t = 15 agree with LSODA (scipy via torchdiffeq, tight
    tolerances); at the default tolerances with a fraction of dopri5's evaluations (a third by t = 10, when the
    flow has only begun to crawl along its stiff direction)."""
    model, start = stall_system()
    y0 = torch.cat([start, model.initial_state(randn(1, 6, seed=4).sign())])
    on_cpu = model.to("cpu")  # LSODA (scipy) runs on the CPU
    for t_max in (5.0, 15.0):
        cfg = SolverConfig(method="ros34pw2", rtol=1e-8, atol=1e-10, tol=1e-10, t_max=t_max, newton_finish=False,
                           early_stall=False)
        out = integrate(model, y0, cfg)
        ref = odeint(lambda _, x: on_cpu.vector_field(x), y0.cpu(), torch.tensor([0.0, t_max], dtype=F64),
                     method="scipy_solver", options={"solver": "LSODA"}, rtol=1e-11, atol=1e-13)[-1]
        assert out.status_names() == ["max_time"] * 2
        torch.testing.assert_close(out.x.cpu(), ref, rtol=0, atol=1e-5)
    cfg = SolverConfig(method="ros34pw2", t_max=10.0, newton_finish=False, early_stall=False)
    stiff, explicit = integrate(model, y0, cfg), integrate(model, y0, replace(cfg, method="dopri5"))
    assert float(explicit.nfe.double().mean()) > 3 * float(stiff.nfe.double().mean())


def test_ros34pw2_reports_the_stall_like_dopri5() -> None:
    model, y0 = stall_system()
    stiff = integrate(model, y0, SolverConfig(method="ros34pw2"))
    assert stiff.status_names() == ["stalled"]  # dopri5 says so too, after ~10⁵ evaluations
    with torch.no_grad():
        assert float(model.residual(stiff.x).abs().max()) == pytest.approx(0.299, abs=2e-3)


def test_ros34pw2_settings() -> None:
    assert SolverConfig(method="ros34pw2").row_wise
    with pytest.raises(ConfigError, match=r"^solver\.backend='torchdiffeq': ros34pw2 runs on the rows backend only"):
        SolverConfig(method="ros34pw2", backend="torchdiffeq")
    for args, pattern in ((["solver=ros34pw2", "solver.backend=torchdiffeq"], r"^solver\.backend="),
                          (["+solver.bogus=1"], r"^solver\.bogus=1: unknown setting \(allowed: .*tol"),
                          (["solver.newton_speed=-1"], r"^solver\.newton_speed=-1")):
        with pytest.raises(ConfigError, match=pattern) as info:
            preflight([*args, "logger=none"])
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["dopri5", "ros34pw2"])
def test_lyapunov_check_states_along_trajectories_follow_the_flow(method: str) -> None:
    """The Lyapunov check samples states at t = 0.5, 2, 8 with the configured solver (ros34pw2 for stiff systems):
    they are odeint's states at those times (rows that converged earlier stay where they stopped)."""
    model, start = stall_system()
    y0 = torch.cat([start, model.initial_state(randn(2, 6, seed=7).sign())])
    along = _along_trajectories(model, y0, SolverConfig(method=method, rtol=1e-8, atol=1e-10, tol=1e-9))
    on_cpu = model.to("cpu")  # LSODA (scipy) runs on the CPU
    ref = odeint(lambda _, x: on_cpu.vector_field(x), y0.cpu(), torch.tensor([0.0, 0.5, 2.0, 8.0], dtype=F64),
                 method="scipy_solver", options={"solver": "LSODA"}, rtol=1e-11, atol=1e-13)[1:]
    torch.testing.assert_close(along.cpu(), ref.reshape(-1, 6), rtol=0, atol=1e-5)


def test_a_stiff_explicit_run_names_ros34pw2(caplog: pytest.LogCaptureFixture) -> None:
    """dopri5 on the stall system (an eigenvalue near −900) needs thousands of steps and says the system looks
    stiff; ros34pw2 on the same run does not."""
    model, start = stall_system()
    runs = {}
    for method in ("dopri5", "ros34pw2"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="hopbench.solve.runge_kutta"):
            integrate(model, start, SolverConfig(method=method, t_max=40.0, newton_finish=False, early_stall=False))
        runs[method] = [r.getMessage() for r in caplog.records if "looks stiff" in r.getMessage()]
    assert len(runs["dopri5"]) == 1 and "solver=ros34pw2" in runs["dopri5"][0]
    assert runs["ros34pw2"] == []
