"""Storage rules and weight structures against their defining formulas and naive references."""

from __future__ import annotations

import pytest
import torch

from hopbench.core.activations import build_activation
from hopbench.core.data import build_dataset
from hopbench.core.models import build_model
from hopbench.core.system import generator
from hopbench.core.weights import WEIGHTS, Bias, Storage, build_network
from hopbench.errors import ConfigError

F64 = torch.float64


def data(name: str = "random_binary", P: int = 5, N: int = 30, **params: object):
    return build_dataset(name, params, n_patterns=P, n_neurons=N, generator=generator(0, "patterns"))


def storage(d, activation: str = "tanh", bias: float = 0.0) -> Storage:
    b = torch.full((d.n_neurons,), bias, dtype=F64)
    return Storage(d, build_activation(activation), b, generator(0, "weights"))


def weights(name: str, d, activation: str = "tanh", **params: object) -> torch.Tensor:
    """W of rule ``name`` (checked against the composition first, as a SystemSpec does)."""
    rule = WEIGHTS.build(name, params)
    rule.check(d.n_patterns, d.n_neurons, build_activation(activation))
    return rule.store(storage(d, activation)).W


def network(name: str, params: dict | None, d, lag, *, bias: Bias | None = None, dtype: torch.dtype = torch.float32):
    rule = WEIGHTS.build(name, params)
    rule.check(d.n_patterns, d.n_neurons, lag)
    return build_network(rule, d, lag, generator=generator(0, "w"), bias=bias, dtype=dtype)


def test_hebbian_bipolar() -> None:
    d = data()
    W = weights("hebbian", d)
    X = d.patterns
    ref = sum(torch.outer(x, x) for x in X) / 30
    ref.fill_diagonal_(0)
    torch.testing.assert_close(W, ref)
    assert float(torch.diagonal(weights("hebbian", d, zero_diagonal=False)).min()) == pytest.approx(5 / 30)


def test_hebbian_sparse_uses_coding_level() -> None:
    d = data("sparse_binary", P=4, N=40, coding_level=0.2)
    W = weights("hebbian", d)
    f = 0.2
    ref = sum(torch.outer(x - f, x - f) for x in d.patterns) / (40 * f * (1 - f))
    ref.fill_diagonal_(0)
    torch.testing.assert_close(W, ref)


def test_projection_rule_projects_onto_patterns() -> None:
    d = data(P=6, N=20)
    W = weights("pseudoinverse", d)
    X = d.patterns.T
    torch.testing.assert_close(W @ X, X)
    torch.testing.assert_close(W @ W, W)
    torch.testing.assert_close(W, W.T)


@pytest.mark.parametrize(("activation", "params"), [("power", {}), ("tanh", {}), ("sigmoid", {})])
def test_graded_rule_makes_every_pattern_a_fixed_point(activation: str, params: dict) -> None:
    P, N = 30, 60
    if activation == "power":
        d = data("lognormal", P=P, N=N, cv=1.0)
    else:
        d = data("gaussian", P=P, N=N, std=0.2)
        if activation == "sigmoid":
            d = type(d)(torch.sigmoid(d.patterns * 5), d.kind, d.sample)
        else:
            d = type(d)(torch.tanh(d.patterns), d.kind, d.sample)
    lag = build_activation(activation, params)
    net = network("pseudoinverse", {"graded": True}, d, lag, dtype=F64)
    X = d.patterns
    modified = build_model("modified", net, strategy="identity")
    assert float(modified.residual(X).abs().max()) < 1e-8
    original = build_model("original", net)
    assert float(original.residual(original.initial_state(X)).abs().max()) < 1e-8


def test_graded_rule_with_dead_neurons_and_bias() -> None:
    """relu, {0,1} patterns, dead_field and a bias: exact fixed points whose silent neurons are strictly dead."""
    d = data("sparse_binary", P=5, N=80, coding_level=0.3)
    net = network("pseudoinverse", {"graded": True, "dead_field": 0.5}, d, build_activation("relu"),
                  bias=Bias(kind="constant", value=0.3), dtype=F64)
    model = build_model("original", net)
    y = model.initial_state(d.patterns)
    assert float(model.residual(y).abs().max()) < 1e-10
    torch.testing.assert_close(model.readout(y), d.patterns)
    silent = d.patterns == 0
    torch.testing.assert_close(y[silent], torch.full_like(y[silent], -0.5))
    with pytest.raises(ConfigError, match=r"weights\.dead_field"):
        network("pseudoinverse", {"graded": True, "dead_field": 0.5}, d, build_activation("softmax"))


def test_pseudoinverse_rejects_overload_without_ridge() -> None:
    with pytest.raises(ConfigError, match=r"n_patterns=25: .*at most N = 20"):
        weights("pseudoinverse", data(P=25, N=20))
    W = weights("pseudoinverse", data(P=25, N=20), ridge=0.1)
    assert torch.isfinite(W).all()


def test_storkey_matches_naive_loops() -> None:
    d = data(P=4, N=12)
    W = weights("storkey", d)
    n = 12
    ref = torch.zeros(n, n, dtype=F64)
    for xi in d.patterns:
        new = ref.clone()
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                h_ij = sum(ref[i, k] * xi[k] for k in range(n) if k not in (i, j))
                h_ji = sum(ref[j, k] * xi[k] for k in range(n) if k not in (i, j))
                new[i, j] = ref[i, j] + (xi[i] * xi[j] - xi[i] * h_ji - h_ij * xi[j]) / n
        ref = new
    torch.testing.assert_close(W, ref)


def test_goe_spectrum_edge() -> None:
    W = weights("goe", data(N=600), sigma=1.5)
    torch.testing.assert_close(W, W.T)
    edge = float(torch.linalg.eigvalsh(W).abs().max())
    assert edge == pytest.approx(3.0, rel=0.05)


def test_ginibre_spectral_radius() -> None:
    W = weights("ginibre", data(N=600), sigma=0.8)
    radius = float(torch.linalg.eigvals(W).abs().max())
    assert radius == pytest.approx(0.8, rel=0.06)
    assert float((W - W.T).abs().max()) > 0.1


@pytest.mark.parametrize("symmetric", [True, False])
def test_hierarchical_block_structure_and_normalisation(symmetric: bool) -> None:
    W = weights("hierarchical", data(N=40), layers=[10, 12, 8, 10], symmetric=symmetric)
    starts = [0, 10, 22, 30, 40]
    for i in range(4):
        for j in range(4):
            block = W[starts[i]:starts[i + 1], starts[j]:starts[j + 1]]
            if abs(i - j) != 1:
                assert float(block.abs().max()) == 0.0
            else:
                assert float(torch.linalg.matrix_norm(block, ord=2)) == pytest.approx(0.5)
    assert float(torch.linalg.matrix_norm(W, ord=2)) <= 1.0 + 1e-12
    assert (float((W - W.T).abs().max()) == 0.0) == symmetric


def test_hierarchical_layer_errors_and_activations() -> None:
    with pytest.raises(ConfigError, match=r"weights\.layers"):
        weights("hierarchical", data(N=40), layers=[10, 10])
    d = data(N=12)
    rule = WEIGHTS.build("hierarchical", {"n_layers": 3, "layer_activations": [None, {"name": "relu"}, None]})
    structure = rule.store(storage(d))
    lag = structure.lagrangian(build_activation("tanh", {"beta": 1.0}))
    assert lag.name == "tanh+relu+tanh"


def test_bipartite_is_a_modern_hopfield_network() -> None:
    """Identity features + softmax memories: fixed points satisfy ξ = s Ξ softmax(β s Ξᵀ ξ)."""
    d = data(P=4, N=30)
    net = network("bipartite", {"memory_beta": 8.0}, d, build_activation("identity"), dtype=F64)
    assert net.n == 34 and net.n_visible == 30
    W = net.W
    s = 30**-0.5
    torch.testing.assert_close(W[:30, 30:], s * d.patterns.T)
    torch.testing.assert_close(W[30:, :30], s * d.patterns)
    assert float(W[:30, :30].abs().max()) == 0.0 and float(W[30:, 30:].abs().max()) == 0.0
    model = build_model("original", net)
    from hopbench.solve import polish

    y = polish(model, model.initial_state(net.embed(d.patterns))).x
    feature = y[:, :30]
    update = s * torch.softmax(8.0 * s * feature @ d.patterns.T, -1) @ d.patterns
    torch.testing.assert_close(feature, update)


def test_bias_kinds() -> None:
    d = data()
    lag = build_activation("tanh", {"beta": 1.0})
    assert float(network("hebbian", None, d, lag).b.abs().max()) == 0
    b = network("hebbian", None, d, lag, bias=Bias(kind="constant", value=0.3)).b
    assert bool((b == 0.3).all())
    assert float(network("hebbian", None, d, lag, bias=Bias(kind="random")).b.std()) > 0
    with pytest.raises(ConfigError, match=r"bias\.kind='huge'"):
        Bias(kind="huge")
