"""The extremal spectrum route (Lanczos bounds + exact fallback) gives the verdicts of the full route.

Reference values come from ``torch.linalg.eigvalsh`` / ``eigvals`` on dense matrices (the full route and plain
torch), never from the Lanczos code itself.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from hopbench.analysis import stability
from hopbench.analysis.lanczos import extremes, resolution
from hopbench.analysis.stability import StabilityConfig, analyse
from hopbench.app.compose import compose
from hopbench.core.activations import ACTIVATIONS, build_activation
from hopbench.core.models import build_model
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.solve import integrate, polish
from tests.conftest import DEVICE, F64, randn, random_net, relu_memory

FULL, EXTREMAL = StabilityConfig(spectrum="full"), StabilityConfig(spectrum="extremal")
VERDICTS = ("jacobian_verdict", "energy_verdict", "range_certified", "condition12_holds", "agreement")


def with_spectrum(eigs: torch.Tensor, seed: int) -> torch.Tensor:
    """A symmetric matrix (N, N) with eigenvalues ``eigs`` (N,) and random eigenvectors."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(eigs.shape[0], eigs.shape[0], generator=gen, dtype=F64))
    return ((Q * eigs) @ Q.T).to(DEVICE)


def dense_operator(A: torch.Tensor):
    return lambda rows: (lambda v: torch.bmm(A[rows], v.unsqueeze(-1)).squeeze(-1))


def stored_points(model, X: torch.Tensor) -> torch.Tensor:
    return polish(model, integrate(model, model.initial_state(X)).x).x


def lanczos(A: torch.Tensor, steps: int):
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(A.shape[0], A.shape[-1], generator=gen, dtype=F64).to(DEVICE)
    return extremes(dense_operator(A), start, max_steps=steps, generator=gen)


def test_bounds_hold_where_ritz_values_mislead() -> None:
    """The eq. 4 Hessians of a saturated tanh memory: a cluster of tiny eigenvalues (Λ_i of saturated neurons)
    with the smallest one isolated below it. After 48 steps the smallest Ritz value sits in the cluster, more
    than the tolerance 1e-6 above λ_min (a verdict from it would be wrong); the bound must contain λ_min and
    λ_max all the same."""
    system = compose(model="original", activation="tanh", activation_params={"beta": 4.0}, n_neurons=120,
                     load=0.12, seed=0, device=str(DEVICE), dtype="float64")
    model = system.model
    H = model.energy.hessian(stored_points(model, system.data.patterns.to(DEVICE)))
    exact = torch.linalg.eigvalsh(H)
    bounds = lanczos(H, 48)
    lo, hi = bounds.min_interval
    assert bool(((lo <= exact[:, 0]) & (exact[:, 0] <= hi + 1e-12)).all())
    lo, hi = bounds.max_interval
    assert bool(((lo - 1e-12 <= exact[:, -1]) & (exact[:, -1] <= hi)).all())
    assert float((bounds.low - exact[:, 0]).max()) > 1e-5  # the Ritz value alone would misjudge


def test_lanczos_is_exact_after_breakdown_and_at_n_steps() -> None:
    A = torch.stack([-torch.eye(30, dtype=F64, device=DEVICE), with_spectrum(torch.linspace(-2, 1, 30,
                                                                                              dtype=F64), 1)])
    bounds = lanczos(A, 30)
    torch.testing.assert_close(bounds.low, torch.tensor([-1.0, -2.0], dtype=F64, device=DEVICE))
    torch.testing.assert_close(bounds.high, torch.tensor([-1.0, 1.0], dtype=F64, device=DEVICE))
    assert float(bounds.low_error.max()) == 0.0 and float(bounds.high_error.max()) == 0.0


def test_resolution_shrinks_with_steps() -> None:
    values = [resolution(m, 1000) for m in (16, 32, 64, 128, 256)]
    assert values[0] == float("inf")
    assert all(a > b for a, b in itertools.pairwise(values[1:]))
    assert 0.005 < values[3] < 0.03  # about 1 % of the Ritz spread after ~128 steps
    assert resolution(50, 50) == 0.0


def assert_same(model, x: torch.Tensor) -> dict:
    full, ext = analyse(model, x, FULL), analyse(model, x, EXTREMAL)
    for key in VERDICTS:
        if key in full:
            assert torch.equal(full[key], ext[key]), key
    for key, err in (("max_real", "max_real_error"), ("energy_min_eig", "energy_min_eig_error")):
        assert bool(((full[key] - ext[key]).abs() <= ext[err] + 1e-9).all()), key
    assert ext["spectrum_route"] == "extremal" and full["spectrum_route"] == "full"
    assert not bool(full["eigvalsh_fallback"].any())
    return ext


@pytest.fixture
def short_lanczos(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most 64 Lanczos steps: on N = 120 the bounds are then not exact, as on large memories."""
    monkeypatch.setattr(stability, "MAX_STEPS", 64)


@pytest.mark.usefixtures("short_lanczos")
@pytest.mark.parametrize("load", [0.05, 0.12, 0.2])
def test_hebbian_tanh_verdicts_match_the_full_route(load: float) -> None:
    system = compose(model="original", activation="tanh", activation_params={"beta": 4.0}, n_neurons=120,
                     load=load, seed=1, device=str(DEVICE), dtype="float64")
    X = system.data.patterns.to(DEVICE)
    assert_same(system.model, stored_points(system.model, X))
    modified = system.with_model("modified", strategy="i_minus_wt_lambda").model  # condition (12), E3
    assert_same(modified, stored_points(modified, X))


@pytest.mark.usefixtures("short_lanczos")
def test_relu_memory_dead_neurons_stay_inconclusive() -> None:
    system = relu_memory(8, 120)
    x = stored_points(system.model, system.data.patterns.to(DEVICE))
    ext = assert_same(system.model, x)
    assert bool((ext["energy_verdict"] == 1).all())  # flat along the dead neurons: inconclusive
    assert bool((ext["jacobian_verdict"] == 0).all()) and bool(ext["range_certified"].all())


@pytest.mark.usefixtures("short_lanczos")
def test_softmax_memory() -> None:
    system = compose(model="original", activation="softmax", activation_params={"beta": 14.0}, n_neurons=120,
                     load=0.05, seed=2, device=str(DEVICE), dtype="float64")
    assert_same(system.model, stored_points(system.model, system.data.patterns.to(DEVICE)))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_at_arbitrary_states(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward-mode Hessian products work for every Lagrangian, and the non-symmetric routes are left alone."""
    monkeypatch.setattr(stability, "MAX_STEPS", 40)
    net = random_net(56, name, symmetric=True, seed=5, scale=0.8)
    assert_same(build_model("original", net), randn(6, 56, seed=6))
    assert_same(build_model("modified", net, strategy="i_minus_wt_lambda"), randn(6, 56, seed=7))


def linear_network(top: float, n: int = 60) -> Network:
    """Identity activation, W with spectrum linspace(−0.5, 0.5) ∪ {top}: J = W − I at 0, eq. 4 Hessian I − W."""
    eigs = torch.cat([torch.linspace(-0.5, 0.5, n - 1, dtype=F64), torch.tensor([top], dtype=F64)])
    return Network(with_spectrum(eigs, 3), torch.zeros(n, dtype=F64, device=DEVICE), build_activation("identity"))


@pytest.mark.parametrize(("top", "jacobian", "energy", "fallback"), [
    (0.7, "stable", "certified", False),     # far from the margin: Lanczos decides
    (1.3, "unstable", "unstable", False),    # a Ritz value beyond the threshold is proof
    (1 + 1e-7, "marginal", "inconclusive", True),  # within tolerance of 0: only the exact spectrum decides
    (1 - 1e-3, "stable", "certified", True),  # outside the band but within the Lanczos error: exact
])
def test_points_near_the_margin_go_to_the_fallback(top: float, jacobian: str, energy: str, fallback: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stability, "MAX_STEPS", 40)  # N = 60 > 40 steps: the bounds are not exact
    model = build_model("original", linear_network(top))
    x = torch.zeros(2, 60, dtype=F64, device=DEVICE)
    ext = assert_same(model, x)
    assert stability.JACOBIAN_VERDICTS[int(ext["jacobian_verdict"][0])] == jacobian
    assert stability.ENERGY_VERDICTS[int(ext["energy_verdict"][0])] == energy
    assert bool(ext["eigvalsh_fallback"].all()) == fallback


def test_kept_spectra_and_split_are_the_full_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stability, "MAX_STEPS", 40)
    system = relu_memory(10, 60)
    x = stored_points(system.model, system.data.patterns.to(DEVICE))
    full = analyse(system.model, x, FULL, keep_spectra=True, split=True)
    ext = analyse(system.model, x, EXTREMAL, keep_spectra=3)
    torch.testing.assert_close(ext["spectrum"], full["spectrum"][:3])
    assert "bulk_edge" not in ext
    split = analyse(system.model, x, EXTREMAL, split=True)
    torch.testing.assert_close(split["bulk_edge"], full["bulk_edge"])
    torch.testing.assert_close(split["outlier_1_real"], full["outlier_1_real"])
    general = torch.linalg.eigvals(system.model.jacobian(x)).real.amax(-1)  # independent of the route
    torch.testing.assert_close(full["max_real"], general, rtol=1e-9, atol=1e-9)


def test_auto_route_follows_the_size() -> None:
    cfg = StabilityConfig()
    assert not cfg.extremal(stability.EXTREMAL_MIN_N - 1) and cfg.extremal(stability.EXTREMAL_MIN_N)
    assert not StabilityConfig(spectrum="full").extremal(10**6) and StabilityConfig(spectrum="extremal").extremal(2)


def test_bad_spectrum_route_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"stability\.spectrum='lanczos'.*allowed: auto, extremal, full"):
        StabilityConfig(spectrum="lanczos")
    with pytest.raises(ConfigError, match=r"stability\.n_outliers"):
        StabilityConfig(n_outliers=-1)
