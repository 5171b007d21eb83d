"""Fast checks of the helpers behind the prop1, prop3 and prop4 reproductions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hopbench.analysis.dead_neurons import flat_energy_probe
from hopbench.core.activations import build_activation
from hopbench.core.models import build_energy
from hopbench.core.network import Network
from hopbench.core.weights import goe_matrix
from hopbench.repro import prop1, prop3, prop4
from tests.conftest import DEVICE, relu_memory

F64 = torch.float64


def test_tracy_widom_1_matches_known_mean_and_variance() -> None:
    mean, variance = prop3.tw1_moments()
    assert mean == pytest.approx(-1.2065335745820, abs=1e-5)
    assert variance == pytest.approx(1.6077810345810, abs=1e-4)


def test_hastings_mcleod_follows_its_asymptotics() -> None:
    hm = prop3.hastings_mcleod()
    s, q = hm["s"], hm["q"]
    left = np.argmin(np.abs(s + 8.0))
    assert q[left] == pytest.approx(math.sqrt(4.0), rel=1e-3)  # q(s) ~ √(−s/2) as s → −∞
    _, F = prop3.tw1_cdf()
    assert F[0] < 1e-10 and F[-1] == pytest.approx(1.0, abs=1e-7)  # 1 − F₁(8) ≈ 8e-9
    assert np.all(np.diff(F) >= -1e-14)


def test_expected_max_of_two_tw1_lies_above_the_mean() -> None:
    e_max = prop3.expected_max_two_tw1()
    mean, variance = prop3.tw1_moments()
    # E max(X1, X2) = μ + E|X1 − X2|/2, and E|X1 − X2| ≤ √(2 Var)
    assert mean < e_max <= mean + 0.5 * math.sqrt(2 * variance)


def test_corrected_ratio_limits() -> None:
    assert prop3.corrected_ratio(100, 0, -0.25) == pytest.approx(1.0)
    assert prop3.corrected_ratio(10**9, 5 * 10**8, -0.25) == pytest.approx(math.sqrt(0.5), rel=1e-5)
    assert prop3.corrected_ratio(200, 150, -0.25) < 0.5


def test_ratio_of_means_standard_error_matches_resampling() -> None:
    rng = np.random.default_rng(0)
    b = 2 + 0.05 * rng.standard_normal(4000)
    a = 0.5 * b + 0.03 * rng.standard_normal(4000)
    r, se = prop3.ratio_of_means(a, b)
    assert r == pytest.approx(0.5, abs=3e-3)
    boot = [prop3.ratio_of_means(*(x[idx] for x in (a, b)))[0]
            for idx in (rng.integers(0, 4000, 4000) for _ in range(200))]
    assert se == pytest.approx(np.std(boot), rel=0.25)


def test_compressed_goe_has_the_predicted_edge() -> None:
    gen = torch.Generator().manual_seed(0)
    W = goe_matrix(300, 1.0, gen, batch=(2,))
    assert torch.allclose(W, W.transpose(-1, -2))
    full = prop3.spectral_norm_symmetric(W)
    comp = prop3.compressed_norms(W, 75, gen)
    assert torch.all((full - 2).abs() < 0.15)
    assert torch.all((comp - 2 * math.sqrt(0.25)).abs() < 0.15)


@pytest.mark.parametrize(("name", "closed_form"), [
    ("sigmoid", lambda lvl: 2 * math.acosh(1 / math.sqrt(lvl))),  # Λ/Λmax = sech²(y/2)
    ("tanh", lambda lvl: math.acosh(1 / math.sqrt(lvl))),  # Λ/Λmax = sech²(y)
])
def test_saturation_edge_matches_closed_form(name: str, closed_form) -> None:
    lag = build_activation(name, {"beta": 1.0})
    level = 1e-6
    edge = prop1.saturation_edge(lag, level * prop1.peak_curvature(lag))
    assert edge == pytest.approx(closed_form(level), rel=1e-6)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_mean_value_bound_dominates_the_eq4_variation(name: str) -> None:
    gen = torch.Generator().manual_seed(3)
    n = 20
    W = goe_matrix(n, 1.0, gen).to(DEVICE)
    b = (0.1 * torch.randn(n, generator=gen, dtype=F64)).to(DEVICE)
    lag = build_activation(name)
    net = Network(W, b, lag)
    params = {"n_states": 16, "level": 1e-4, "saturated_fraction": 0.5, "width": 2.0}
    y, dead_tol, _ = prop1.probe_states(name, lag, params, n, gen)
    y = y.to(DEVICE)
    probe = flat_energy_probe(net, y, [build_energy("eq4", net, state="y")], dead_tol=dead_tol, n_draws=8,
                              scale=3.0, generator=gen)
    bound = prop1.mean_value_bound(net, y, dead_tol, 3.0)
    assert torch.all(probe["n_dead"] > 0)
    assert torch.all(probe["eq4"] <= bound)
    assert torch.all(probe["eq4"] > 0)


def test_relu_states_are_exactly_flat_for_eq4() -> None:
    rows = prop1.probe_activation("relu", goe_matrix(10, 1.0, torch.Generator().manual_seed(0)).to(DEVICE),
                                  torch.zeros(10, dtype=F64, device=DEVICE),
                                  {"n_states": 8, "level": 1e-6, "c_max": 5.0, "n_draws": 4},
                                  torch.Generator().manual_seed(1))
    by_energy = {r["energy"]: r for r in rows}
    assert by_energy["eq4"]["max_abs_dE"] <= 1e-12
    assert by_energy["e2"]["min_abs_dE"] > 1e-6


def test_flat_starts_move_only_dead_neurons() -> None:
    system = relu_memory(3, 30)
    y_star = system.model.initial_state(system.data.patterns.to(F64))
    params = {"flat_starts": 3, "dead_tol": 1e-6, "c_max": 10.0}
    starts, owner = prop4.flat_starts(system.net, y_star, params, torch.Generator().manual_seed(0))
    assert starts.shape == (9, 30) and owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    moved = starts - y_star[owner]
    dead = y_star[owner] < 0
    assert torch.all(moved[~dead] == 0) and torch.all(moved[dead] <= 0)
    assert torch.equal(system.model.readout(starts), system.model.readout(y_star[owner]))
