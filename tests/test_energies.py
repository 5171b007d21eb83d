"""Energies: analytic gradients and Hessians against autograd; the factor G of ∇E = −G r; identities."""

from __future__ import annotations

import pytest
import torch

from hopbench.core.models import ENERGIES, build_energy, build_model
from hopbench.core.models.dynamics import UState, YState
from tests.conftest import randn, random_net

ACTS = ["tanh", "relu", "softmax", "smooth_leaky_relu", "power", "gelu", "sigmoid"]
STATE = {name: ENERGIES.get(name).state for name in ENERGIES}
PARAMS = {"e3": {"S": "random_spd"}, "eq14": {"S": "random_spd"},
          "combined": {"alpha": 0.7, "beta": -0.4, "gamma": 1.3, "S": "random_spd"}}


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("name", list(ENERGIES))
def test_gradient_and_hessian_match_autograd(name: str, activation: str, symmetric: bool) -> None:
    net = random_net(6, activation, symmetric, seed=1)
    energy = build_energy(name, net, PARAMS.get(name), state=STATE[name])
    x = randn(3, 6, seed=2, scale=1.5)
    xg = x.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(energy.value(xg).sum(), xg)
    torch.testing.assert_close(energy.gradient(x), auto, rtol=1e-10, atol=1e-10)
    H_auto = torch.stack([torch.autograd.functional.hessian(lambda z: energy.value(z.unsqueeze(0))[0], xi)
                          for xi in x])
    torch.testing.assert_close(energy.hessian(x), H_auto, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("activation", ["tanh", "softmax", "relu"])
@pytest.mark.parametrize("name", list(ENERGIES))
def test_factor_gives_gradient_from_residual(name: str, activation: str) -> None:
    """∇E = −G(x) r(x) with r the model's fixed-point residual (symmetric W)."""
    net = random_net(6, activation, symmetric=True, seed=3)
    energy = build_energy(name, net, PARAMS.get(name), state=STATE[name])
    form = YState if STATE[name] == "y" else UState
    x = randn(4, 6, seed=4)
    r = form.residual(net, x, form.preactivation(net, x))
    torch.testing.assert_close(energy.gradient(x), -(energy.factor(x) @ r.unsqueeze(-1)).squeeze(-1))


@pytest.mark.parametrize("name", ["e3", "eq14"])
def test_factor_exact_for_nonsymmetric_weights(name: str) -> None:
    net = random_net(7, "tanh", symmetric=False, seed=5)
    energy = build_energy(name, net, {"S": "random_spd"}, state=STATE[name])
    form = YState if STATE[name] == "y" else UState
    x = randn(4, 7, seed=6)
    r = form.residual(net, x, form.preactivation(net, x))
    torch.testing.assert_close(energy.gradient(x), -(energy.factor(x) @ r.unsqueeze(-1)).squeeze(-1))


def test_e1_equals_original_energy_at_corresponding_state() -> None:
    """E1(u) = E_eq4(Wu + b) for symmetric W (the steady-state map of §2)."""
    net = random_net(8, "tanh", symmetric=True, seed=7)
    u = randn(5, 8, seed=8)
    e1 = build_energy("e1", net, state="u").value(u)
    eq4 = build_energy("eq4", net, state="y").value(u @ net.W.T + net.b)
    torch.testing.assert_close(e1, eq4)


def test_combined_is_weighted_sum() -> None:
    net = random_net(5, "sigmoid", symmetric=True, seed=9)
    u = randn(3, 5, seed=10)
    parts = {n: build_energy(n, net, state="u").value(u) for n in ("e1", "e2", "e3")}
    combo = build_energy("combined", net, {"alpha": 2.0, "beta": -1.0, "gamma": 0.5}, state="u")
    torch.testing.assert_close(combo.value(u), 2 * parts["e1"] - parts["e2"] + 0.5 * parts["e3"])


def test_energy_state_mismatch_is_config_error() -> None:
    net = random_net(4, "tanh", symmetric=True)
    with pytest.raises(Exception, match=r"energy='e2': is a function of the u-state"):
        build_model("original", net, energy="e2")
