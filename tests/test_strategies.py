"""Strategies: polar and Lyapunov factors, theory flags, and the Lyapunov check that decides (§5.6)."""

from __future__ import annotations

import pytest
import torch

from hopbench.analysis.descent import condition11, energy_rate
from hopbench.core.models import build_model
from hopbench.core.models.strategies import polar_factor
from hopbench.core.network import Network
from tests.conftest import DEVICE, F64, hebbian_net, randn, random_net


def test_polar_factor_is_orthogonal_and_reconstructs_w() -> None:
    net = random_net(12, "tanh", symmetric=True, seed=21)
    O = polar_factor(net.W)
    eye = torch.eye(12, dtype=F64, device=DEVICE)
    torch.testing.assert_close(O.T @ O, eye)
    P = O.T @ net.W
    torch.testing.assert_close(P, P.T)
    assert float(torch.linalg.eigvalsh(P).min()) > -1e-12
    torch.testing.assert_close(O @ P, net.W)
    model = build_model("modified", net, strategy="polar")
    torch.testing.assert_close(model.strategy.R, O)


def test_lyapunov_strategy_solves_the_lyapunov_equation() -> None:
    net = random_net(10, "tanh", symmetric=True, seed=22)
    W = net.W + 3 * torch.eye(10, dtype=F64, device=DEVICE)  # W ≻ 0
    net = Network(W, net.b, net.lagrangian)
    model = build_model("modified", net, strategy="lyapunov_equation", strategy_params={"q": 2.0})
    R = model.strategy.R
    torch.testing.assert_close(R @ W + W @ R, 2.0 * torch.eye(10, dtype=F64, device=DEVICE))
    assert float(torch.linalg.eigvalsh(R).min()) > 0
    assert model.backing.backed


def test_lyapunov_strategy_on_indefinite_w_is_flagged_not_fatal() -> None:
    net, _ = hebbian_net(3, 20)
    model = build_model("modified", net, strategy="lyapunov_equation")
    assert not model.backing.backed
    assert any("positive definite" in r for r in model.backing.reasons)


BACKED = [  # (model, activation, symmetric W, strategy, energy)
    ("original", "tanh", True, "identity", "auto"),
    ("modified", "tanh", True, "identity", "e1"),
    ("modified", "tanh", True, "w", "e2"),
    ("modified", "tanh", True, "polar", "e2"),
    ("modified", "smooth_leaky_relu", False, "i_minus_wt_lambda", "e3"),
    ("modified", "tanh", False, "polar_f", "e3"),
    ("modified", "relu", True, "polar_f", "combined"),
    ("modified_y", "relu", False, "y_i_minus_lambda_wt", "eq14"),
]
UNBACKED = [  # each must show violations at random states
    ("modified", "tanh", True, "identity", "e2", "positive semi-definite"),
    ("modified", "tanh", True, "i_minus_wt_lambda", "e2", "no theorem"),
    ("modified", "relu", False, "lambda", "e3", "numerical abscissa"),
    ("modified_y", "relu", False, "y_i_minus_w_lambda", "eq14", "no theorem"),
    ("original", "tanh", False, "identity", "auto", "W symmetric"),
    ("modified", "tanh", False, "polar_f", "combined", "exactly"),
]


def network_for(activation: str, symmetric: bool, scale: float = 3.0) -> Network:
    if symmetric and activation == "tanh":
        return hebbian_net(5, 20, "tanh", {"beta": 2.0})[0]
    return random_net(20, activation, symmetric, seed=5, scale=scale)


@pytest.mark.parametrize(("name", "activation", "symmetric", "strategy", "energy"), BACKED)
def test_backed_pairings_never_increase_energy(name, activation, symmetric, strategy, energy) -> None:
    net = network_for(activation, symmetric)
    model = build_model(name, net, strategy=strategy, energy=energy)
    assert model.backing.backed, model.backing.reasons
    states = model.initial_state(randn(300, 20, seed=9, scale=3.0))
    rate = energy_rate(model, states, tol=1e-9)
    assert not bool(rate["violation"].any())
    assert bool(condition11(model, states)["holds"].all())


@pytest.mark.parametrize(("name", "activation", "symmetric", "strategy", "energy", "reason"), UNBACKED)
def test_unbacked_pairings_are_flagged_and_show_violations(name, activation, symmetric, strategy, energy,
                                                           reason) -> None:
    net = network_for(activation, symmetric, scale=6.0)
    model = build_model(name, net, strategy=strategy, energy=energy)
    assert not model.backing.backed
    assert any(reason in r for r in model.backing.reasons), model.backing.reasons
    states = model.initial_state(randn(500, 20, seed=9, scale=3.0))
    rate = energy_rate(model, states)
    assert bool(rate["violation"].any())
    assert float(rate["relative"].max()) > 1e-3
    if model.energy.factor_exact:
        assert not bool(condition11(model, states)["holds"].all())


def test_weighting_other_than_identity_is_flagged() -> None:
    """E3 with S ≠ I is not what Example 6.1 proves (violations are rare at random states: not asserted)."""
    net = random_net(10, "tanh", symmetric=False, seed=5)
    model = build_model("modified", net, strategy="i_minus_wt_lambda", energy_params={"S": "random_spd"})
    assert not model.backing.backed
    assert model.backing.reasons == ("requirement fails: S = I",)


def test_energy_rate_matches_finite_difference_along_trajectory() -> None:
    """dE/dt = ∇E·ẋ (autograd) against a central difference of E along an RK4 trajectory."""
    net = random_net(8, "tanh", symmetric=False, seed=31, scale=2.0)
    model = build_model("modified", net, strategy="i_minus_wt_lambda")
    x = randn(4, 8, seed=32)
    dt = 1e-4

    def rk4(z: torch.Tensor, h: float) -> torch.Tensor:
        f = model.vector_field
        k1 = f(z)
        k2 = f(z + h / 2 * k1)
        k3 = f(z + h / 2 * k2)
        k4 = f(z + h * k3)
        return z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    for _ in range(50):  # a short trajectory first
        x = rk4(x, 0.01)
    fd = (model.energy.value(rk4(x, dt)) - model.energy.value(rk4(x, -dt))) / (2 * dt)
    torch.testing.assert_close(energy_rate(model, x)["rate"], fd, rtol=1e-6, atol=1e-9)
