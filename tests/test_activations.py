"""Activations: g = ∇L and Λ = ∇g checked against autograd; closed forms against quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import quad

from hopbench.core.activations import ACTIVATIONS, Layered, Power, build_activation
from hopbench.errors import ConfigError
from tests.conftest import DEVICE, F64, randn

CASES = [(name, {}) for name in ACTIVATIONS] + [
    ("tanh", {"beta": 3.0}),
    ("sigmoid", {"beta": 0.5}),
    ("softmax", {"beta": 2.0}),
    ("threshold_linear", {"gain": 2.0, "threshold": 0.3}),
    ("power", {"n": 1.5, "threshold": -0.5, "sigma": 0.3}),
    ("power", {"n": 2.0, "threshold": 0.2, "sigma": 1.0}),
    ("power", {"n": 2.0, "threshold": 0.1, "sigma": 0.0}),
]


def points() -> torch.Tensor:
    """Random inputs over a wide range: dead/saturated regions included (|h| up to ~12)."""
    h = randn(6, 9, seed=3, scale=4.0)
    h[0] = torch.linspace(-12, 12, 9, dtype=F64)
    return h


@pytest.mark.parametrize(("name", "params"), CASES)
def test_activation_is_gradient_of_lagrangian(name: str, params: dict) -> None:
    lag = build_activation(name, params)
    h = points().requires_grad_(True)
    (grad,) = torch.autograd.grad(lag.lagrangian(h).sum(), h)
    torch.testing.assert_close(lag.activation(h.detach()), grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("name", "params"), CASES)
def test_hessian_is_jacobian_of_activation(name: str, params: dict) -> None:
    lag = build_activation(name, params)
    h = points()
    J = torch.func.vmap(torch.func.jacrev(lambda x: lag.activation(x.unsqueeze(0)).squeeze(0)))(h)
    torch.testing.assert_close(lag.hessian(h).dense(), J, rtol=1e-12, atol=1e-12)
    v = randn(*h.shape, seed=5)
    torch.testing.assert_close(lag.hvp(h, v), (J @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n", "threshold", "sigma"), [(1.0, 0.0, 0.1), (1.5, -0.5, 0.3), (2.0, 0.2, 1.0)])
def test_power_lagrangian_matches_quadrature(n: float, threshold: float, sigma: float) -> None:
    """L(b) − L(a) = ∫_a^b φ: an independent check of the series/incomplete-gamma closed form."""
    lag = Power(n=n, threshold=threshold, sigma=sigma)
    grid = torch.tensor([[-3.0, -0.4, 0.0, 0.25, 1.0, 3.0, 8.0]], dtype=F64)
    L = lag.ell(grid)[0]
    phi = lambda x: float(lag.activation(torch.tensor([[x]], dtype=F64))[0, 0])  # noqa: E731
    for i in range(1, grid.shape[1]):
        a, b = float(grid[0, i - 1]), float(grid[0, i])
        exact = quad(phi, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
        assert abs(float(L[i] - L[i - 1]) - exact) <= 1e-11 * max(1.0, abs(exact))
    # and L(h) → 0 far below the threshold, as ∫_{−∞}^h φ must
    assert float(lag.ell(torch.tensor([[threshold - 40 * max(sigma, 0.1)]], dtype=F64))) < 1e-12


def test_power_hard_threshold_limit() -> None:
    """σ → 0 gives [h − θ]₊ⁿ."""
    h = torch.linspace(-2, 2, 41, dtype=F64).unsqueeze(0)
    soft = Power(n=1.5, threshold=0.2, sigma=1e-4).activation(h)
    hard = torch.relu(h - 0.2) ** 1.5
    assert float((soft - hard).abs().max()) < 1e-4


@pytest.mark.parametrize("name", ["power", "sigmoid", "tanh", "identity", "threshold_linear", "relu",
                                  "smooth_leaky_relu", "softmax"])
def test_inverse(name: str) -> None:
    lag = build_activation(name)
    gen = torch.Generator().manual_seed(0)
    if name == "softmax":
        a = torch.softmax(torch.randn(4, 6, generator=gen, dtype=F64), -1)
    elif name in ("sigmoid",):
        a = torch.rand(4, 6, generator=gen, dtype=F64) * 0.98 + 0.01
    elif name == "tanh":
        a = torch.rand(4, 6, generator=gen, dtype=F64) * 1.9 - 0.95
    elif name in ("power", "threshold_linear", "relu"):
        a = torch.rand(4, 6, generator=gen, dtype=F64) * 3 + 0.05
    else:
        a = torch.randn(4, 6, generator=gen, dtype=F64) * 3
    torch.testing.assert_close(lag.activation(lag.inverse(a)), a, rtol=1e-10, atol=1e-10)


def test_gelu_has_no_inverse() -> None:
    with pytest.raises(ConfigError, match="activation"):
        build_activation("gelu").inverse(torch.ones(1, 3, dtype=F64))


def test_smooth_leaky_relu_matches_example7_and_is_monotone() -> None:
    """g'(u) = g(u)/u + 9u exp(−9u²/64)/(32√π) (Example 7), and g' > 0.15 on [−40, 40]."""
    lag = build_activation("smooth_leaky_relu")
    u = torch.linspace(-40, 40, 8001, dtype=F64).unsqueeze(0)
    u = u[u != 0].unsqueeze(0)
    g = lag.activation(u)
    paper = g / u + 9 * u * torch.exp(-9 * u * u / 64) / (32 * math.sqrt(math.pi))
    torch.testing.assert_close(lag.hessian(u).values, paper, rtol=1e-12, atol=1e-12)
    assert float(lag.hessian(u).values.min()) > 0.15


def test_monotone_flags_agree_with_hessians() -> None:
    h = torch.linspace(-8, 8, 1601, dtype=F64).unsqueeze(0)
    for name in ACTIVATIONS:
        lag = build_activation(name)
        min_eig = float(lag.hessian(h[:, :40] if not lag.diagonal else h).eigenvalues().min())
        assert (min_eig >= -1e-12) == lag.monotone, name


def test_softmax_shift_is_dead_direction() -> None:
    lag = build_activation("softmax", {"beta": 1.5})
    h = randn(5, 7, seed=2)
    lam = lag.hessian(h)
    assert bool((lam.nullity(1e-10) == 1).all())
    torch.testing.assert_close(lag.activation(h + 3.7), lag.activation(h))
    V = lag.dead_directions(h, 1e-10)
    assert V.shape == (5, 7, 1)


def test_dead_directions_keep_activation_constant() -> None:
    """Moving along V c (c ≥ 0) leaves g unchanged (the Definition of dead neurons, §2)."""
    h = randn(4, 10, seed=4, scale=3.0)
    for name, tol in [("relu", 0.0), ("threshold_linear", 0.0), ("power", 0.0)]:
        lag = build_activation(name, {"sigma": 0.0} if name == "power" else None)
        V = lag.dead_directions(h, tol)
        assert int((V.abs().sum(-2) > 0).sum()) > 0, name
        c = torch.rand(4, V.shape[-1], dtype=F64, device=DEVICE) * 5
        moved = h + (V @ c.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(lag.activation(moved), lag.activation(h), rtol=0, atol=0)


def test_layered_blocks() -> None:
    lag = Layered([(3, build_activation("tanh", {"beta": 1.0})), (4, build_activation("softmax"))])
    h = randn(2, 7, seed=6).requires_grad_(True)
    (grad,) = torch.autograd.grad(lag.lagrangian(h).sum(), h)
    torch.testing.assert_close(lag.activation(h.detach()), grad)
    H = lag.hessian(h.detach()).dense()
    assert float(H[:, :3, 3:].abs().max()) == 0.0
    J = torch.func.vmap(torch.func.jacrev(lambda x: lag.activation(x.unsqueeze(0)).squeeze(0)))(h.detach())
    torch.testing.assert_close(H, J)


def test_bad_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"activation\.beta"):
        build_activation("tanh", {"beta": -1.0})
    with pytest.raises(ConfigError, match=r"activation\.gain=.*not a parameter of activation=tanh"):
        build_activation("tanh", {"gain": 2.0})
    with pytest.raises(ConfigError, match=r"activation='nope': unknown option \(allowed: .*tanh"):
        build_activation("nope")
