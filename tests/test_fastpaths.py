"""The fast paths give the results of the slow ones: same final states, same spectra, same verdicts.

What is checked here is equality with the straightforward computation, never speed (that is `make bench`).
"""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq import odeint

from hopbench import chunks
from hopbench.analysis import stability
from hopbench.analysis.stability import eigvalsh, jacobian_eigenvalues
from hopbench.core.activations import build_activation
from hopbench.core.models import build_model, energies
from hopbench.core.network import Network
from hopbench.errors import ConfigError
from hopbench.solve import SolverConfig, integrate, polish
from hopbench.threads import budget, job_budget
from tests.conftest import DEVICE, F64, hebbian_net, randn


def flipped(X: torch.Tensor, level: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    flips = (torch.rand(X.shape, generator=gen, dtype=F64) < level).to(X.device)
    return torch.where(flips, -X, X)


def test_windowed_early_stopping_integration_matches_one_plain_odeint_call() -> None:
    """integrate (windows, converged rows leave the batch, unguarded first) ends where a single full-batch
    torchdiffeq call over the whole horizon ends, and retrieves the same patterns."""
    net, X = hebbian_net(8, 80, "tanh", {"beta": 4.0})
    model = build_model("original", net)
    x0 = model.initial_state(flipped(X.repeat(3, 1), 0.1, seed=5))
    cfg = SolverConfig(backend="torchdiffeq", rtol=1e-8, atol=1e-10, tol=1e-7, t_max=80.0)
    out = integrate(model, x0, cfg)
    assert out.counts()["converged"] == x0.shape[0]
    with torch.no_grad():
        plain = odeint(lambda _, x: model.vector_field(x), x0, torch.tensor([0.0, cfg.t_max], dtype=F64,
                       device=DEVICE), method="dopri5", rtol=cfg.rtol, atol=cfg.atol)[-1]
    torch.testing.assert_close(out.x, plain, rtol=0, atol=1e-5)
    cosine = lambda x: torch.nn.functional.cosine_similarity(model.readout(x), X.repeat(3, 1), dim=-1)  # noqa: E731
    assert torch.equal(cosine(out.x) >= 0.95, cosine(plain) >= 0.95)


@pytest.mark.parametrize("backend", ["rows", "torchdiffeq"])
def test_a_diverging_row_does_not_change_the_others(backend: str) -> None:
    """Every other row gets the result it gets in a batch of its own."""
    net, X = hebbian_net(4, 30, "tanh", {"beta": 1.0})
    model = build_model("original", net)
    good = model.initial_state(flipped(X, 0.1, seed=2))
    cfg = SolverConfig(backend=backend, bound=1e3, rtol=1e-8, atol=1e-10, tol=1e-7)
    alone = integrate(model, good, cfg)
    boom = torch.full((1, 30), float("inf"), dtype=F64, device=DEVICE)
    mixed = integrate(model, torch.cat([good[:2], boom, good[2:]]), cfg)
    assert mixed.status_names()[2] == "diverged"
    keep = [0, 1, 3, 4]
    assert mixed.status_names()[:2] + mixed.status_names()[3:] == alone.status_names()
    torch.testing.assert_close(mixed.x[keep], alone.x, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("activation", "params"), [("relu", None), ("tanh", {"beta": 3.0}),
                                                     ("sigmoid", None), ("softmax", {"beta": 2.0})])
def test_symmetric_spectrum_route_matches_general_eig_and_its_definition(activation: str, params: dict | None) -> None:
    """The similar-symmetric route (Λ^{1/2}WΛ^{1/2} − I, batched eigvalsh) equals eig(WΛ − I) and the matrix it
    builds equals the definition computed densely, for diagonal Λ (relu, tanh, sigmoid) and full Λ (softmax)."""
    net, _ = hebbian_net(5, 24, activation, params)
    model = build_model("original", net)
    y = randn(7, 24, seed=8)
    fast, route = jacobian_eigenvalues(model, y)
    assert route == "similar-symmetric"
    slow = torch.linalg.eigvals(model.jacobian(y))
    order = lambda e: e.real.argsort(-1)  # noqa: E731  (the spectra are real)
    torch.testing.assert_close(fast.gather(-1, order(fast)), slow.gather(-1, order(slow)), rtol=1e-9, atol=1e-9)
    lam = net.lagrangian.hessian(y).dense()
    vals, vecs = torch.linalg.eigh(lam)
    root = vecs @ torch.diag_embed(vals.clamp_min(0).sqrt()) @ vecs.transpose(-1, -2)
    expected = root @ net.W @ root - torch.eye(24, dtype=F64, device=DEVICE)
    torch.testing.assert_close(model.symmetric_jacobian(y), expected, rtol=1e-10, atol=1e-12)


def test_non_symmetric_weights_take_the_general_route() -> None:
    """No symmetric shortcut where none is valid: a non-symmetric W goes to the general eigensolver."""
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(12, 12, generator=gen, dtype=F64) / 12**0.5
    net = Network(W.to(DEVICE), torch.zeros(12, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))
    model = build_model("original", net)
    y = polish(model, randn(3, 12, seed=1)).x
    fast, route = jacobian_eigenvalues(model, y)
    assert route == "general" and model.symmetric_jacobian(y) is None
    torch.testing.assert_close(fast, torch.linalg.eigvals(model.jacobian(y)))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_split_eigvalsh_equals_one_lapack_call(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """hopbench.analysis.stability.eigvalsh (the batch split over single-threaded LAPACK calls) = torch's, in order,
    and leaves the thread budget as it found it."""
    monkeypatch.setattr(stability, "SPLIT_WORK", 0)  # split even this small batch
    A = randn(13, 20, 20, seed=6)
    S = A + A.transpose(-1, -2)
    with job_budget(threads):
        fast = eigvalsh(S)
        assert budget() == threads
    torch.testing.assert_close(fast, torch.linalg.eigvalsh(S), rtol=1e-12, atol=1e-12)


# the row-wise integrator (solver.backend=rows) ---------------------------------------------------------------
ROWS = SolverConfig(backend="rows", rtol=1e-8, atol=1e-10, tol=1e-7, t_max=80.0)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_row_wise_integration_matches_one_plain_odeint_call(method: str) -> None:
    """Each row with its own step size ends where torchdiffeq's full-batch call ends, and where the windowed
    torchdiffeq backend ends: same states, statuses and retrieved patterns."""
    net, X = hebbian_net(8, 80, "tanh", {"beta": 4.0})
    model = build_model("original", net)
    x0 = model.initial_state(flipped(X.repeat(3, 1), 0.1, seed=5))
    cfg = SolverConfig(backend="rows", method=method, rtol=1e-8, atol=1e-10, tol=1e-7, t_max=80.0)
    rows = integrate(model, x0, cfg)
    windows = integrate(model, x0, SolverConfig(backend="torchdiffeq", method=method, rtol=1e-8, atol=1e-10,
                                                tol=1e-7, t_max=80.0))
    with torch.no_grad():
        plain = odeint(lambda _, x: model.vector_field(x), x0, torch.tensor([0.0, 80.0], dtype=F64, device=DEVICE),
                       method="dopri5", rtol=1e-10, atol=1e-12)[-1]
    assert rows.counts() == windows.counts() == {"converged": x0.shape[0], "max_time": 0, "diverged": 0, "stalled": 0}
    torch.testing.assert_close(rows.x, plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(rows.x, windows.x, rtol=0, atol=1e-5)
    assert float(model.vector_field(rows.x).abs().amax()) < cfg.tol
    assert bool((rows.speed < cfg.tol).all()) and bool((rows.t > 0).all()) and bool((rows.nfe > 2).all())


def test_row_wise_statuses_converged_max_time_diverged() -> None:
    """A converging, a cycling, an exploding and a non-finite row in one batch each get their own status."""


    cycle = 2.0 * torch.tensor([[math.cos(0.8), -math.sin(0.8)], [math.sin(0.8), math.cos(0.8)]], dtype=F64)
    for W, x0, expected in [
        (0.5 * torch.eye(2, dtype=F64), [[1.0, -2.0], [float("nan"), 0.0]], ["converged", "diverged"]),
        (cycle, [[0.1, 0.0], [2.0, 1.0]], ["max_time", "max_time"]),
    ]:
        net = Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))
        out = integrate(build_model("original", net), torch.tensor(x0, dtype=F64, device=DEVICE),
                        SolverConfig(backend="rows", t_max=60.0))
        assert out.status_names() == expected
        assert sum(out.counts().values()) == 2
    net = Network(torch.diag(torch.tensor([3.0, 0.5], dtype=F64)).to(DEVICE), torch.zeros(2, dtype=F64,
                  device=DEVICE), build_activation("identity"))
    out = integrate(build_model("original", net), torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64, device=DEVICE),
                    SolverConfig(backend="rows", bound=1e4, t_max=100))
    assert out.status_names() == ["diverged", "converged"]
    assert float(out.x[0].abs().max()) > 1e4 and float(out.x[1].abs().max()) < 1e-3


def test_row_wise_energy_trace_and_bad_settings() -> None:
    """The energy trace covers every row at every accepted step (non-increasing for the gradient flow of
    eq. 4 with symmetric W); rows-only settings are checked like every other solver key."""


    net, X = hebbian_net(4, 40, "tanh", {"beta": 1.0})
    model = build_model("original", net)
    out = integrate(model, model.initial_state(flipped(X, 0.2, seed=1)), ROWS, record_energy=True)
    assert out.trace is not None and set(out.trace.index.tolist()) == set(range(4))
    assert not bool(out.trace.increases(1e-9).any())
    with pytest.raises(ConfigError, match=r"solver\.backend"):
        SolverConfig(backend="scipy")
    with pytest.raises(ConfigError, match=r"solver\.method"):
        SolverConfig(backend="rows", method="rk4")


@pytest.mark.parametrize("t_max", [0.3, 7.3, 19.9, 61.7])
def test_row_wise_horizon_ends_as_max_time_whatever_the_rounding(t_max: float) -> None:
    """A limit cycle reaches t_max through a last, clipped step: max_time, never a spurious 'diverged'."""
    W = 2.0 * torch.tensor([[math.cos(0.8), -math.sin(0.8)], [math.sin(0.8), math.cos(0.8)]], dtype=F64)
    net = Network(W.to(DEVICE), torch.zeros(2, dtype=F64, device=DEVICE), build_activation("tanh", {"beta": 1.0}))
    x0 = torch.tensor([[0.1, 0.0], [2.0, 1.0], [-1.0, 0.5]], dtype=F64, device=DEVICE)
    out = integrate(build_model("original", net), x0, SolverConfig(backend="rows", t_max=t_max))
    assert out.status_names() == ["max_time"] * 3
    torch.testing.assert_close(out.t, torch.full_like(out.t, t_max), rtol=1e-9, atol=0)


@pytest.mark.parametrize("model_name", ["original", "modified"])
def test_chunked_analysis_equals_one_batch(model_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Newton polish, analyse() and the energy Hessian in chunks of a few points (bounded memory) return what one
    batch returns."""
    net, X = hebbian_net(6, 20, "tanh", {"beta": 2.0})
    model = build_model(model_name, net)
    start = model.initial_state(flipped(X.repeat(2, 1), 0.1, seed=4))
    polished = polish(model, start)
    x = polished.x
    whole = stability.analyse(model, x, keep_spectra=True)
    monkeypatch.setattr(chunks, "MATRIX_CHUNK_ENTRIES", 3 * 20**2)
    monkeypatch.setattr(energies, "HESSIAN_CHUNK_ENTRIES", 2 * 20**2)  # Hessian: 2 rows, 1 point per pass
    chunked = polish(model, start)
    for field in ("x", "residual", "converged", "shift"):
        torch.testing.assert_close(getattr(chunked, field), getattr(polished, field), rtol=1e-12, atol=1e-12)
    parts = stability.analyse(model, x, keep_spectra=True)
    assert parts.keys() == whole.keys()
    for key, value in whole.items():
        if isinstance(value, str):
            assert parts[key] == value
        else:
            torch.testing.assert_close(parts[key], value, rtol=1e-12, atol=1e-12)


def test_an_empty_batch_analyses_to_empty_results() -> None:
    """No fixed points (e.g. every start diverged) is a valid input: every per-point result is empty."""
    net, _ = hebbian_net(3, 10, "tanh", {"beta": 1.0})
    for model in (build_model("original", net), build_model("modified", net)):
        table = stability.analyse(model, torch.zeros(0, 10, dtype=F64, device=DEVICE))
        assert all(v.shape[0] == 0 for v in table.values() if isinstance(v, torch.Tensor))
        assert polish(model, torch.zeros(0, 10, dtype=F64, device=DEVICE)).x.shape == (0, 10)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_polish_leaves_non_finite_rows_unconverged_and_polishes_the_others(bad: float) -> None:
    """A diverged state (NaN or ±inf in it) is never a fixed point and does not stop the batch: the finite rows
    are polished as they would be alone."""
    net, X = hebbian_net(3, 10, "tanh", {"beta": 2.0})
    for model in (build_model("original", net), build_model("modified", net)):
        start = model.initial_state(flipped(X, 0.1, seed=2))
        alone = polish(model, start)
        mixed = start.clone()
        mixed[1, 4] = bad
        out = polish(model, mixed)
        assert not bool(out.converged[1])
        keep = torch.tensor([0, 2], device=start.device)
        torch.testing.assert_close(out.x[keep], alone.x[keep], rtol=0, atol=1e-12)
        assert bool(out.converged[keep].all()) and bool(alone.converged.all())
