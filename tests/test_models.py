"""Models: vector fields against dense written-out equations, Jacobians against torch.func.jacrev."""

from __future__ import annotations

import pytest
import torch

from hopbench.core.models import STRATEGIES, build_model
from hopbench.solve import polish
from tests.conftest import DEVICE, F64, hebbian_net, randn, random_net

U_STRATEGIES = ["identity", "w", "polar", "i_minus_wt_lambda", "lambda", "polar_f", "lyapunov_equation"]
Y_STRATEGIES = ["identity", "y_i_minus_w_lambda", "y_i_minus_lambda_wt", "polar_f"]
COMBOS = ([("original", "identity")] + [("modified", s) for s in U_STRATEGIES]
          + [("modified_y", s) for s in Y_STRATEGIES])


def dense_reference(model, x: torch.Tensor) -> torch.Tensor:
    """eq. 1 / 9 / 13 written with explicit matrices per state (independent of the batched code)."""
    net = model.net
    W, b, lag = net.W, net.b, net.lagrangian
    out = []
    for xi in x:
        if model.state == "y":
            h = xi
            r = W @ lag.activation(h[None])[0] - xi + b
        else:
            h = W @ xi + b
            r = lag.activation(h[None])[0] - xi
        Lam = lag.hessian(h[None]).dense()[0]
        eye = torch.eye(len(xi), dtype=xi.dtype, device=xi.device)
        R = {
            "identity": eye,
            "w": W,
            "polar": getattr(model.strategy, "R", None),
            "lyapunov_equation": getattr(model.strategy, "R", None),
            "i_minus_wt_lambda": eye - W.T @ Lam,
            "lambda": Lam,
            "y_i_minus_w_lambda": eye - W @ Lam,
            "y_i_minus_lambda_wt": eye - Lam @ W.T,
            "polar_f": model.strategy.matrix(xi[None], h[None])[0] if model.strategy.name == "polar_f" else None,
        }[model.strategy.name]
        out.append(R @ r)
    return torch.stack(out)


@pytest.mark.parametrize(("name", "strategy"), COMBOS)
def test_vector_field_matches_dense_equations(name: str, strategy: str) -> None:
    net = random_net(6, "tanh", symmetric=True, seed=11, scale=1.5)
    net = net.__class__(net.W + 3 * torch.eye(6, dtype=F64, device=DEVICE), net.b, net.lagrangian)  # W ≻ 0
    model = build_model(name, net, strategy=strategy)
    x = randn(4, 6, seed=12)
    torch.testing.assert_close(model.vector_field(x), dense_reference(model, x))


def fixed_points(model, n: int) -> torch.Tensor:
    """Fixed points by Newton from several starts (float64)."""
    starts = model.initial_state(randn(n, model.net.n, seed=13))
    result = polish(model, starts, iterations=60, tol=1e-12)
    assert bool(result.converged.any())
    return result.x[result.converged]


@pytest.mark.parametrize(("name", "strategy"), COMBOS)
@pytest.mark.parametrize("activation", ["tanh", "softmax", "smooth_leaky_relu"])
def test_jacobian_matches_jacrev_at_fixed_points(name: str, strategy: str, activation: str) -> None:
    net = random_net(6, activation, symmetric=True, seed=14, scale=2.5)
    model = build_model(name, net, strategy=strategy)
    x = fixed_points(model, 6)
    auto = torch.func.vmap(torch.func.jacrev(lambda z: model.vector_field(z.unsqueeze(0)).squeeze(0)))(x)
    torch.testing.assert_close(model.jacobian(x), auto, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", ["original", "modified"])
def test_residual_jacobian_exact_everywhere(name: str) -> None:
    net = random_net(7, "sigmoid", symmetric=False, seed=15, scale=2.0)
    model = build_model(name, net, strategy="identity")
    x = randn(5, 7, seed=16)
    auto = torch.func.vmap(torch.func.jacrev(lambda z: model.residual(z.unsqueeze(0)).squeeze(0)))(x)
    torch.testing.assert_close(model.residual_jacobian(x), auto)
    torch.testing.assert_close(model.jacobian(x), auto)  # R = I: J = ∂r everywhere


def test_symmetric_jacobian_has_the_jacobian_spectrum() -> None:
    net, _ = hebbian_net(5, 40, "relu")
    for name in ("original", "modified"):
        model = build_model(name, net, strategy="identity")
        x = randn(3, 40, seed=17)
        S = model.symmetric_jacobian(x)
        assert S is not None
        eig_general = torch.linalg.eigvals(model.jacobian(x)).real.sort(-1).values
        torch.testing.assert_close(torch.linalg.eigvalsh(S), eig_general, rtol=1e-9, atol=1e-9)
    assert build_model("modified", net, strategy="w").symmetric_jacobian(x) is None


def test_steady_states_correspond_through_affine_map() -> None:
    """u* = g(Wu* + b) ⇔ y* = Wu* + b solves y = W g(y) + b (§2)."""
    net, X = hebbian_net(4, 50, "tanh", {"beta": 3.0}, bias=0.05)
    modified = build_model("modified", net)
    u = polish(modified, X.clone(), tol=1e-13).x
    original = build_model("original", net)
    y = u @ net.W.T + net.b
    assert float(original.residual(y).abs().max()) < 1e-11
    torch.testing.assert_close(original.readout(y), u)


def test_cue_maps() -> None:
    net, X = hebbian_net(3, 20, "tanh", bias=0.1)
    torch.testing.assert_close(build_model("original", net).initial_state(X), X @ net.W.T + net.b)
    torch.testing.assert_close(build_model("original", net, cue_map="identity").initial_state(X), X)
    torch.testing.assert_close(build_model("modified", net).initial_state(X), X)
    with pytest.raises(Exception, match=r"cue_map='bad'"):
        build_model("original", net, cue_map="bad")


def test_original_ignores_strategy() -> None:
    net, _ = hebbian_net(3, 20)
    assert build_model("original", net, strategy="w").strategy.name == "identity"


def test_every_strategy_is_covered() -> None:
    assert set(U_STRATEGIES) | set(Y_STRATEGIES) == set(STRATEGIES)
