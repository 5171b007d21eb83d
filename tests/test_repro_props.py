"""Fast checks of the helpers behind the prop1, prop3 and prop4 reproductions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
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
    y_star = system.model.initial_state(system.patterns.to(F64))
    params = {"flat_starts": 3, "dead_tol": 1e-6, "c_max": 10.0}
    starts, owner = prop4.flat_starts(system.net, y_star, params, torch.Generator().manual_seed(0))
    assert starts.shape == (9, 30) and owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    moved = starts - y_star[owner]
    dead = y_star[owner] < 0
    assert torch.all(moved[~dead] == 0) and torch.all(moved[dead] <= 0)
    assert torch.equal(system.model.readout(starts), system.model.readout(y_star[owner]))


# --- reproductions' shared helpers, critical_load, dead_neurons, example7, strategies -------------------------
def test_rounded_keeps_types_and_rounds_nested_floats() -> None:
    from hopbench.repro import rounded

    value = {"a": 0.123456789, "b": [1.0000000004, 2, True, None, "x"], "c": {"d": -3.14159265e-12},
             "e": math.nan, "f": 0.0, "g": np.float64(2.0 / 3.0)}
    out = rounded(value, 4)
    assert out["a"] == 0.1235 and out["b"] == [1.0, 2, True, None, "x"] and out["c"]["d"] == -3.142e-12
    assert math.isnan(out["e"]) and out["f"] == 0.0 and out["g"] == 0.6667 and isinstance(out["g"], float)
    assert isinstance(out["b"][2], bool)


def test_sparse_lognormal_has_exact_coding_level_mean_and_cv() -> None:
    from hopbench.repro.critical_load import sparse_lognormal

    data = sparse_lognormal(400, 250, 2.0, 0.2, torch.Generator().manual_seed(0))
    X = data.patterns
    assert torch.all((X > 0).sum(-1) == 50) and torch.all(X >= 0)
    active = X[X > 0]
    assert float(active.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(active.std() / active.mean()) == pytest.approx(2.0, rel=0.15)


@pytest.mark.parametrize(("family", "ridge"), [("dense", 0.0), ("sparse", 0.0), ("dense", 1e-3)])
def test_reduced_spectrum_matches_the_dense_jacobian(family: str, ridge: float) -> None:
    """The P × P reduced spectrum (H recovered from W) against eig(−I + diag(φ'(Wx)) W) at fixed points."""
    from hopbench.repro.critical_load import Config, reduced_spectra, stored_system
    from hopbench.solve import polish

    config = Config(family, 1.0, -0.5, 1.0, 0.1 if family == "dense" else 0.0, ridge)
    params = {"n_neurons": 30, "coding_level": 0.3, "dead_field": 0.5}
    system = stored_system(config, params, load=0.2, seed=1, device=torch.device(DEVICE))
    X = system.data.patterns.to(DEVICE, F64)
    x = polish(system.model, X, iterations=60, tol=1e-12).x if ridge else X
    x = x[system.model.residual(x).abs().amax(-1) < 1e-10]  # with ridge, patterns whose fixed point survives
    assert x.shape[0] >= 2
    lam = ridge * 30 * 2.0
    reduced = reduced_spectra(system, x, lam)
    slope = system.model.net.lagrangian.slope(x @ system.net.W.T)
    for i in range(x.shape[0]):
        J = -torch.eye(30, dtype=F64, device=x.device) + slope[i].unsqueeze(-1) * system.net.W
        full = torch.linalg.eigvals(J)
        # the reduced eigenvalues are the full ones except N − P copies of −1
        rest = full[(full + 1).abs() > 1e-9]
        assert rest.shape[0] <= reduced.shape[-1]
        for ev in rest:
            assert float((reduced[i] - ev).abs().min()) < 1e-7


def test_critical_loads_statuses_and_seed_spread() -> None:
    from hopbench.repro.critical_load import critical_loads

    rows = []
    curves = {("a", 0): [1.0, 1.0, 0.0], ("a", 1): [1.0, 0.0, 0.0], ("b", 0): [0.2, 0.0, 0.0],
              ("b", 1): [0.4, 0.0, 0.0], ("c", 0): [1.0, 1.0, 1.0], ("c", 1): [1.0, 1.0, 0.8]}
    for (name, seed), values in curves.items():
        for load, v in zip((0.1, 0.2, 0.3), values, strict=True):
            rows.append({"family": name, "n": 1.0, "threshold": 0.0, "cv": 1.0, "sigma": 0.0, "ridge": 0.0,
                         "load": load, "seed": seed, "stable_fraction": v, "marginal_fraction": 0.0})
    table = critical_loads(pd.DataFrame(rows), 0.5).set_index("family")
    assert table.loc["a", "status"] == "crossing" and table.loc["a", "alpha_s"] == pytest.approx(0.2)
    # per seed: 0.25 (seed 0: 1 → 0 between 0.2 and 0.3) and 0.15 (seed 1)
    assert table.loc["a", "alpha_s_seed_mean"] == pytest.approx(0.2)
    assert table.loc["a", "alpha_s_seed_std"] == pytest.approx(0.05)
    assert table.loc["b", "status"] == "no_stable_phase" and table.loc["b", "alpha_s_seed_mean"] == 0.0
    assert table.loc["c", "status"] == "never_unstable" and table.loc["c", "alpha_s_for_ranking"] == 0.3


def test_group_comparison_is_vacuous_only_when_both_groups_are_zero() -> None:
    from hopbench.repro.critical_load import compare

    assert compare({1.0: 0.0, 2.0: 0.0}, 1.0, 2.0, "n", "c").vacuous
    assert not compare({1.0: 0.0, 2.0: 0.0}, 1.0, 2.0, "n", "c").passed
    one_zero = compare({1.0: 0.3, 2.0: 0.0}, 1.0, 2.0, "n", "c")
    assert one_zero.passed and not one_zero.vacuous and "all zero" in one_zero.measured
    assert not compare({1.0: 0.1, 2.0: 0.3}, 1.0, 2.0, "n", "c").passed


def test_dead_neurons_memory_setups_and_bad_keys() -> None:
    from hopbench.errors import ConfigError
    from hopbench.repro import dead_neurons

    params = {"memories": {"softmax": {"activation": "identity", "weights": "bipartite",
                                       "weights_params": {"memory_beta": None}},
                           "bad": {"activation": "relu", "colour": 1}}, "cue_level": 0.05}
    assert dead_neurons.memory_kwargs("softmax", params, 64)["weights_params"]["memory_beta"] == 8.0
    assert dead_neurons.memory_cue("softmax", params) == ("flip", {"level": 0.05})
    with pytest.raises(ConfigError, match="colour"):
        dead_neurons.memory_kwargs("bad", params, 10)
    with pytest.raises(ConfigError, match="tanh"):
        dead_neurons.memory_setup("tanh", params)


def test_kink_fraction_counts_neurons_exactly_at_the_relu_threshold() -> None:
    from hopbench.repro.dead_neurons import kink_fraction

    system = relu_memory(2, 10)
    y = torch.tensor([[0.0, -0.2, 1.0, 1e-12, 0.5, -1.0, 2.0, 0.3, 0.0, 1.0],
                      [0.1, -0.2, 1.0, 0.2, 0.5, -1.0, 2.0, 0.3, 0.4, 1.0]], dtype=F64, device=DEVICE)
    assert kink_fraction(system.model, y).tolist() == [0.3, 0.0]


def test_dead_neuron_claims_leave_out_failing_rows_and_kink_points() -> None:
    from hopbench.repro.dead_neurons import claim_sets

    def point(model: str, works: bool, kink: bool, verdict: str, energy: str, dead: float) -> dict:
        return {"model": model, "works": works, "is_fixed_point": True, "at_kink": kink, "jacobian_verdict": verdict,
                "energy_verdict": energy, "dead_fraction": dead, "range_certified": True, "activation": "relu"}

    points = pd.DataFrame([point("original", True, False, "stable", "inconclusive", 0.5),
                           point("original", False, False, "stable", "certified", 0.5),  # memory fails: out
                           point("original", True, True, "stable", "certified", 0.5),  # on the kink: out
                           point("modified", True, False, "stable", "certified", 0.5)])
    corr = pd.DataFrame({"works": [True, True], "source_kink_fraction": [0.0, 0.1], "target_kink_fraction": [0.0, 0.0],
                         "direction": ["(c) x", "(c) y"], "agree": [True, False]})
    sets = claim_sets(points, corr)
    assert sets["a"].tolist() == [True] and sets["a_dead"].tolist() == [True]
    assert sets["b"].tolist() == [True] and sets["c"].tolist() == [True] and sets["c2"].empty


def test_distinct_groups_states_within_tolerance() -> None:
    from hopbench.repro.example7 import count_distinct, distinct

    x = torch.tensor([[0.0, 0.0], [1e-9, 0.0], [1.0, 0.0], [1.0, 5e-7], [0.0, 1.0]], dtype=F64)
    assert count_distinct(x, 1e-6) == 3 and torch.equal(distinct(x, 1e-6), x[[0, 2, 4]])
    assert distinct(x[:0], 1e-6).shape == (0, 2)


def test_example7_census_finds_the_single_fixed_point_of_a_contraction() -> None:
    from hopbench.repro.example7 import build_system, census

    system = build_system([4, 4, 4], 1.0, 1.0, 0, torch.device(DEVICE))
    out = census(system.model, 6, [1.0, 5.0], 0, torch.device(DEVICE))
    assert out["census_converged"] == 12 and out["census_fixed_points"] == 1
    assert out["census_modified_stable"] == 1 and out["census_e3_certified"] == 1


def test_kappa_bound_is_the_sharp_2x2_condition() -> None:
    """Below the bound λ_min(RW + WR) > 0 for every rotation, at it ≈ 0, above it < 0 (brute force)."""
    from hopbench.repro.strategies import kappa_bound, worst_angle_min_eig

    rng = np.random.default_rng(0)
    for kappa_w in (2.0, 9.0, 40.0):
        bound = kappa_bound(kappa_w)
        assert worst_angle_min_eig(0.9 * bound, kappa_w)[1] > 0
        assert abs(worst_angle_min_eig(bound, kappa_w)[1]) < 1e-5 * kappa_w
        assert worst_angle_min_eig(1.1 * bound, kappa_w)[1] < 0
        # random SPD pairs of these condition numbers in 5 dimensions never violate it at 0.99 × the bound
        for _ in range(50):
            Q1, _ = np.linalg.qr(rng.standard_normal((5, 5)))
            Q2, _ = np.linalg.qr(rng.standard_normal((5, 5)))
            W = Q1 @ np.diag(np.geomspace(1, kappa_w, 5)) @ Q1.T
            R = Q2 @ np.diag(np.geomspace(1, 0.99 * bound, 5)) @ Q2.T
            assert np.linalg.eigvalsh(R @ W + W @ R)[0] > 0


def test_strategy_networks_have_their_stated_spectra() -> None:
    from hopbench.repro.strategies import network

    params = {"n_neurons": 30, "load": 0.1, "beta": 4.0, "epsilon": 0.1, "delta": 0.25}
    eig = {}
    for kind in ("pd", "indefinite", "low_rank", "dissipative"):
        net, _ = network(kind, params, 0, torch.device(DEVICE))
        sym = 0.5 * (net.W + net.W.T)
        eig[kind] = torch.linalg.eigvalsh(sym)
    assert float(eig["pd"][0]) == pytest.approx(0.1, abs=1e-12)
    assert float(eig["indefinite"][0]) == pytest.approx(-0.1, abs=1e-12)  # −P/N off the patterns
    assert int((eig["low_rank"].abs() > 1e-9).sum()) == 3
    assert float(eig["dissipative"][-1]) == pytest.approx(-0.25, abs=1e-12)  # ω(W) = −δ
