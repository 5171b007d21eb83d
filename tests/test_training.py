"""task=train (docs/design.md §7): the objectives are the quantities they claim to be, and training achieves them."""

from __future__ import annotations

import pytest
import torch

from hopbench import compose
from hopbench.analysis.training import TrainConfig, denoise_loss, fixed_point_loss, train
from hopbench.core.data import Flip
from hopbench.core.network import Network
from hopbench.core.system import generator
from hopbench.errors import ConfigError
from tests.conftest import DEVICE, F64

MEMORY = dict(model="original", activation="smooth_leaky_relu", weights="goe", weights_params={"sigma": 0.5},
                   dataset="sparse_binary", dataset_params={"coding_level": 0.3, "exact": True},
                   n_neurons=30, n_patterns=4, seed=2, device=str(DEVICE), dtype="float64")


def test_fixed_point_training_makes_every_pattern_a_steady_state_of_eq1() -> None:
    """From a random GOE W, gradient descent on ‖ξ − g(Wξ + b)‖² makes each {0,1} pattern ξ a steady state
    y = Wξ + b of eq. 1 — checked with the model's own residual, not with the loss. (The smooth leaky ReLU is
    invertible with g' > 0.15: with relu, neurons that should be active but start dead get no gradient.)"""
    system = compose(**MEMORY)
    X = system.data.patterns.to(DEVICE, F64)
    before = system.model.residual(system.model.initial_state(X)).abs().amax()
    result = train(system, TrainConfig(steps=1500, lr=0.02, log_every=100), cue=Flip())
    model = result.system.model
    after = model.residual(model.initial_state(X)).abs().amax()
    assert float(before) > 0.5 and float(after) < 0.01 * float(before)
    assert result.history[-1]["loss"] < 1e-3 * result.history[0]["loss"]
    assert torch.equal(result.system.net.W, result.system.net.W.T)  # symmetric: true
    assert result.system.data is system.data


def test_stability_penalty_is_the_spectral_abscissa_of_the_jacobian() -> None:
    """For symmetric W the penalty's λ_max(Λ^½WΛ^½) − 1 is max Re λ(WΛ − I), computed here by a general
    eigensolver at the patterns' fixed points."""
    system = compose(**{**MEMORY, "activation": "tanh", "weights_params": {"sigma": 3.0}, "dataset": "gaussian",
                        "dataset_params": {}})
    net = Network(system.net.W, system.net.b, system.net.lagrangian)
    X = 0.5 * torch.tanh(system.data.patterns.to(DEVICE, F64))
    margin = 0.05
    terms = fixed_point_loss(net=net, patterns=X, cfg=TrainConfig(stability_weight=1.0, margin=margin))
    h = X @ net.W.T + net.b
    lam = net.lagrangian.hessian(h).values
    J = net.W.unsqueeze(0) * lam.unsqueeze(-2) - torch.eye(30, dtype=F64, device=DEVICE)
    abscissa = torch.linalg.eigvals(J).real.amax(-1)
    expected = torch.relu(abscissa + margin).pow(2).mean()
    torch.testing.assert_close(terms["stability_penalty"], expected, rtol=1e-9, atol=1e-12)
    assert float(expected) > 0  # the test must exercise a non-zero penalty


def test_stability_penalty_trains_the_stored_points_stable() -> None:
    """From a W under which the stored points are unstable, the penalised objective moves the patterns towards
    steady states of eq. 1 whose Jacobian (general eigensolver) has max Re λ < 0."""
    system = compose(**{**MEMORY, "weights_params": {"sigma": 3.0}})
    X = system.data.patterns.to(DEVICE, F64)
    cfg = TrainConfig(steps=1500, lr=0.02, stability_weight=10.0, margin=0.1, log_every=100)
    result = train(system, cfg, cue=Flip())
    model = result.system.model
    y, y0 = model.initial_state(X), system.model.initial_state(X)
    assert float(model.residual(y).abs().amax()) < 0.2 * float(system.model.residual(y0).abs().amax())
    assert float(torch.linalg.eigvals(system.model.jacobian(y0)).real.amax()) > 0  # unstable before
    assert float(torch.linalg.eigvals(model.jacobian(y)).real.amax()) < 0
    assert result.history[0]["stability_penalty"] > 0.1 and result.history[-1]["stability_penalty"] < 1e-4


def test_denoise_adjoint_gradient_equals_backprop_through_the_solver() -> None:
    """Two independent routes to dL/dW for the end-to-end objective: backpropagation through torchdiffeq's
    steps and the adjoint ODE."""
    system = compose(model="original", activation="tanh", activation_params={"beta": 2.0}, n_neurons=12,
                     n_patterns=2, seed=1, device=str(DEVICE), dtype="float64")
    X = system.data.patterns.to(DEVICE, F64)
    grads = []
    for adjoint in (False, True):
        W = system.net.W.clone().requires_grad_(True)
        net = Network(W, system.net.b, system.net.lagrangian)
        cfg = TrainConfig(objective="denoise", horizon=2.0, adjoint=adjoint, cues_per_pattern=3)
        terms = denoise_loss(net=net, patterns=X, cfg=cfg, system=system,
                             cue=Flip(level=0.2), step_generator=generator(0, "test cues"))
        (grad,) = torch.autograd.grad(terms["loss"], W)
        grads.append(grad)
    assert float(grads[0].abs().max()) > 1e-6
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-6)


def test_bad_training_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^task\.objective='foo': unknown option \(allowed: denoise, fixed_point\)"):
        TrainConfig(objective="foo")
    with pytest.raises(ConfigError, match=r"^task\.steps=0: must be a positive integer"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match=r"^task\.lr=-1"):
        TrainConfig(lr=-1)
