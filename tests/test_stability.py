"""Stability analysis (§5.4–5.5), Prop. 1 (flat energy) and Prop. 4 (recovery) on small networks."""

from __future__ import annotations

import pytest
import torch

from hopbench.analysis.dead_neurons import flat_energy_probe, minimise_energy, recover_steady_state
from hopbench.analysis.stability import (
    ENERGY_VERDICTS,
    JACOBIAN_VERDICTS,
    StabilityConfig,
    analyse,
    jacobian_eigenvalues,
    split_spectrum,
    summarise,
)
from hopbench.core.activations import build_activation
from hopbench.core.models import build_energy, build_model
from hopbench.core.network import Network
from hopbench.solve import integrate, polish
from tests.conftest import DEVICE, F64, hebbian_net, randn, random_net, relu_memory


def stored_fixed_points(model, X):
    out = integrate(model, model.initial_state(X))
    return polish(model, out.x).x


def relu_fixed_points(P: int = 5, N: int = 100):
    system = relu_memory(P, N)
    X = system.data.patterns.to(DEVICE)
    return system, stored_fixed_points(system.model, X)


def test_relu_original_energy_is_inconclusive_where_dynamics_is_stable() -> None:
    """The paper's point (Prop. 4): eq. 4 is flat at dead neurons, the Jacobian and the range test agree."""
    system, y = relu_fixed_points()
    model = system.model
    assert system.net.is_symmetric()
    torch.testing.assert_close(model.readout(y), system.data.patterns.to(DEVICE))  # the stored patterns
    table = analyse(model, y)
    s = summarise(table)
    assert s["dead_fraction"] == pytest.approx(0.7)
    assert s["stable_fraction"] == 1.0
    assert s["energy_inconclusive_fraction"] == 1.0
    assert s["range_certified_fraction"] == 1.0
    assert s["energy_jacobian_agreement"] == 0.0
    assert table["jacobian_route"] == "similar-symmetric"


def test_range_test_tracks_jacobian_when_memories_become_unstable() -> None:
    system, y = relu_fixed_points(P=40)
    s = summarise(analyse(system.model, y))
    assert 0 < s["stable_fraction"] < 1
    assert s["range_certified_fraction"] == s["stable_fraction"]


def test_range_test_is_not_fooled_by_nearly_dead_neurons() -> None:
    """Saturated tanh neurons with Λ_i just above dead_tol: Prop. 4.2's test is a statement about inertia, so
    it must match an independent dense computation of I − Λ_a^{1/2} W_aa Λ_a^{1/2} on the alive coordinates
    (congruent to Λ_a − Λ_a W_aa Λ_a), not sink to ~Λ_i as the literal matrix does."""
    N = 24
    net = random_net(N, "tanh", symmetric=True, seed=3, scale=0.4, params={"beta": 1.0})  # spectral edge ≈ 0.8: stable
    model = build_model("original", net)
    y = randn(5, N, seed=4)
    y[:, ::3] = 7.5 * torch.sign(y[:, ::3])  # Λ = 1 − tanh²(7.5) ≈ 1.2e-6: alive, but barely
    lam = net.lagrangian.hessian(y).values
    assert bool(((lam[:, ::3] > 1e-6) & (lam[:, ::3] < 2e-6)).all())
    table = analyse(model, y, StabilityConfig(dead_tol=1e-6))
    for i in range(y.shape[0]):
        root = lam[i].sqrt()
        S = root[:, None] * net.W * root[None, :]
        expected = torch.linalg.eigvalsh(torch.eye(N, dtype=F64, device=DEVICE) - S).min()
        torch.testing.assert_close(table["range_min_eig"][i], expected, rtol=1e-10, atol=1e-12)
        literal = torch.diag(lam[i]) - lam[i][:, None] * net.W * lam[i][None, :]
        assert float(torch.linalg.eigvalsh(literal).min()) < 2e-6  # what a fixed tolerance would misjudge
    assert bool(table["range_certified"].all())
    assert bool((table["jacobian_verdict"] == 0).all())


def test_modified_energy_e3_is_not_flat() -> None:
    system = relu_memory(5, 100)
    model = system.with_model("modified", strategy="i_minus_wt_lambda").model
    s = summarise(analyse(model, stored_fixed_points(model, system.data.patterns.to(DEVICE))))
    assert s["dead_fraction"] == pytest.approx(0.7)
    assert s["energy_certified_fraction"] == 1.0 and s["stable_fraction"] == 1.0
    assert s["condition12_fraction"] == 1.0
    assert s["energy_jacobian_agreement"] == 1.0


def test_verdicts_on_a_saddle() -> None:
    """A network with a known unstable fixed point at the origin: W = diag(2, 0.5), identity activation."""
    W = torch.diag(torch.tensor([2.0, 0.5], dtype=F64))
    net = Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("identity"))
    table = analyse(build_model("original", net), torch.zeros(1, 2, dtype=F64, device=DEVICE))
    assert JACOBIAN_VERDICTS[int(table["jacobian_verdict"][0])] == "unstable"
    assert float(table["max_real"][0]) == pytest.approx(1.0)
    # eq. 4 Hessian Λ − ΛWΛ = diag(−1, 0.5): the energy says unstable too
    assert ENERGY_VERDICTS[int(table["energy_verdict"][0])] == "unstable"
    assert bool(table["agreement"][0])


def test_marginal_verdict() -> None:
    W = torch.eye(2, dtype=F64)
    net = Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("identity"))
    table = analyse(build_model("original", net), torch.zeros(1, 2, dtype=F64, device=DEVICE))
    assert JACOBIAN_VERDICTS[int(table["jacobian_verdict"][0])] == "marginal"


@pytest.mark.parametrize(("name", "strategy"), [("original", "identity"), ("modified", "polar"),
                                                ("modified", "i_minus_wt_lambda"), ("modified", "w")])
def test_fast_spectrum_routes_agree_with_general_eig(name: str, strategy: str) -> None:
    net, X = hebbian_net(6, 40, "tanh", {"beta": 2.0})
    model = build_model(name, net, strategy=strategy)
    x = polish(model, model.initial_state(X)).x
    fast, route = jacobian_eigenvalues(model, x)
    slow = torch.linalg.eigvals(model.jacobian(x))
    key = lambda e: e.real * 1e3 + e.imag  # noqa: E731
    torch.testing.assert_close(fast[torch.arange(6).unsqueeze(1), key(fast).argsort(-1)],
                               slow[torch.arange(6).unsqueeze(1), key(slow).argsort(-1)], rtol=1e-8, atol=1e-8)
    assert route in ("similar-symmetric", "symmetric", "general")


def test_split_spectrum() -> None:
    bulk = torch.linspace(-1.5, -0.5, 20, dtype=F64)
    eigs = torch.cat([bulk, torch.tensor([3.0, -9.0], dtype=F64)]).to(torch.complex128).unsqueeze(0)
    edge, outliers = split_spectrum(eigs, 2)
    assert float(edge[0]) == pytest.approx(-0.5)
    assert outliers[0].real.tolist() == [3.0, -9.0]


def test_condition12_equals_energy_hessian_at_fixed_points() -> None:
    """Eq. 12 (sym(−G ∂r)) and the autograd-backed Hessian agree at exact fixed points."""
    net, X = hebbian_net(4, 30, "tanh", {"beta": 3.0})
    for name, strategy in [("modified", "identity"), ("modified", "i_minus_wt_lambda"), ("original", "identity")]:
        model = build_model(name, net, strategy=strategy)
        x = polish(model, model.initial_state(X)).x
        H = model.energy.hessian(x)
        M = -model.energy.factor(x) @ model.residual_jacobian(x)
        torch.testing.assert_close(H, 0.5 * (M + M.transpose(-1, -2)), rtol=1e-8, atol=1e-8)


def probe(net, y, energies):
    return flat_energy_probe(net, y, energies, dead_tol=1e-9, generator=torch.Generator().manual_seed(0))


def test_prop1_relu_original_energy_constant_modified_not() -> None:
    system, y = relu_fixed_points(P=5, N=60)
    net = system.net
    names = {"eq4": "y", "e2": "u", "e3": "u", "eq14": "y"}
    out = probe(net, y, [build_energy(n, net, state=s) for n, s in names.items()])
    assert int(out["n_dead"].min()) > 0
    assert float(out["eq4"].max()) < 1e-12
    for name in ("e2", "e3", "eq14"):
        assert float(out[name].min()) > 1e-3, name


def test_prop1_softmax_shift() -> None:
    net = random_net(8, "softmax", symmetric=True, seed=41, scale=2.0)
    y = randn(6, 8, seed=42)
    out = probe(net, y, [build_energy("eq4", net, state="y"), build_energy("eq14", net, state="y")])
    assert bool((out["n_dead"] == 1).all())
    assert float(out["eq4"].max()) < 1e-12
    assert float(out["eq14"].min()) > 1e-3


def test_prop1_saturated_sigmoid_nearly_flat() -> None:
    net = random_net(8, "sigmoid", symmetric=True, seed=43)
    y = 30.0 * randn(4, 8, seed=44).sign()  # every neuron deep in saturation
    out = flat_energy_probe(net, y, [build_energy("eq4", net, state="y"), build_energy("e2", net, state="u")],
                            dead_tol=1e-8, generator=torch.Generator().manual_seed(0))
    assert bool((out["n_dead"] == 8).all())
    assert float(out["eq4"].max()) < 1e-9
    assert float(out["e2"].min()) > 1e-2


def test_prop4_recovery_from_energy_minimum() -> None:
    """Prop. 4.3: minimise eq. 4, then y = ỹ + P_d(W g(ỹ) + b − ỹ) is a steady state of eq. 1, and it is the
    state the ODE reaches from the same start."""
    system = relu_memory(3, 40)
    net, model = system.net, system.model
    X = system.data.patterns.to(DEVICE)
    start = model.initial_state(X) + 0.05 * randn(3, 40, seed=3)
    y_tilde = minimise_energy(model.energy, start)
    y = recover_steady_state(net, y_tilde, dead_tol=1e-12)
    assert float(model.residual(y).abs().max()) < 1e-6
    reached = polish(model, integrate(model, start).x).x
    torch.testing.assert_close(y, reached, rtol=1e-6, atol=1e-6)
    # the paper's formula (without −P_d ỹ) is off whenever ỹ has a dead component
    P_d = net.lagrangian.hessian(y_tilde).null_projector(1e-12)
    paper = y_tilde + (P_d @ (net.lagrangian.activation(y_tilde) @ net.W.T + net.b).unsqueeze(-1)).squeeze(-1)
    shifted = (P_d @ y_tilde.unsqueeze(-1)).squeeze(-1).abs().max()
    assert float(shifted) > 1e-3  # the minimiser leaves the dead coordinates where the start put them
    assert float(model.residual(paper).abs().max()) > 1e-3


def test_prop4_flat_region_is_basin() -> None:
    """Prop. 4.4: starting anywhere on the flat region of a stable steady state converges back to it."""
    system, y_star = relu_fixed_points(P=3, N=40)
    net, model = system.net, system.model
    V = net.lagrangian.dead_directions(y_star, 0.0)
    c = 5.0 * torch.rand(V.shape[0], V.shape[-1], generator=torch.Generator().manual_seed(1), dtype=F64)
    starts = y_star + (V @ c.to(DEVICE).unsqueeze(-1)).squeeze(-1)
    ends = polish(model, integrate(model, starts).x).x
    torch.testing.assert_close(ends, y_star, rtol=1e-7, atol=1e-7)


def test_stability_config_tolerances() -> None:
    system, x = relu_fixed_points()
    model = system.model
    loose = summarise(analyse(model, x, StabilityConfig(dead_tol=0.5)))
    strict = summarise(analyse(model, x, StabilityConfig(dead_tol=1e-12)))
    assert loose["dead_fraction"] == strict["dead_fraction"]  # ReLU Λ is 0 or 1
