"""Stability of fixed points (docs/design.md §5.4–5.5; paper eq. 6, Prop. 4.2, eq. 12).

For a batch of fixed points x* (B, N) of a float64 model:
- the Jacobian verdict from max Re λ(J) (stable < −tol < marginal < tol < unstable), with a symmetric
  eigensolver whenever J is similar to a symmetric matrix (R = I: Λ^{1/2}WΛ^{1/2} − I) or is symmetric;
- the energy verdict from the minimum eigenvalue of the energy's Hessian (certified / inconclusive /
  unstable, relative tolerance);
- the range test of Prop. 4.2 for y-state models: Λ − ΛWΛ restricted to range(Λ) positive definite;
- condition (12) for the u-state model: sym(G(I − ΛW)) ≻ 0 with G from eq. 11 (equal to the energy Hessian
  at an exact fixed point, computed by another route);
- the dead fraction nullity(Λ)/N and, on request, the bulk/outlier split of the Jacobian spectrum.

Every tolerance is relative: tol · max(1, spectral radius of the matrix tested).

Two routes to these numbers (``StabilityConfig.spectrum``):

- ``full``: every eigenvalue of every matrix (batched ``eigvalsh``; ``eigvals`` for a general Jacobian).
- ``extremal``: a verdict needs one end of a spectrum (max λ of the symmetric Jacobian, min λ of a Hessian)
  and, for its tolerance, the spectral radius. For symmetric matrices these come with bounds from batched
  Lanczos (:mod:`hopbench.analysis.lanczos`) on matrix-free products: Λ^{1/2}(W(Λ^{1/2}v)) − v for the
  Jacobian (one GEMM with the shared W per step), forward-mode Hessian-vector products of the energy's
  analytic gradient (no Hessian is formed), masked products for the range test; condition (12) multiplies
  by G and ∂r instead of forming G ∂r. A point whose bounds do not settle its verdict — the value lies
  within the Lanczos error bound (or :data:`SLACK` · max(1, radius)) of a threshold, or :data:`MAX_STEPS`
  were not enough — gets the exact ``eigvalsh`` (``eigvalsh_fallback``). The verdicts are those of the full
  route; the reported values are Ritz values, within the ``*_error`` columns of the truth (0 where exact).
  A Jacobian that is not similar to a symmetric matrix takes ``eigvals`` on both routes.
- ``auto`` (the default): ``extremal`` from :data:`EXTREMAL_MIN_N` neurons, ``full`` below.

Full Jacobian spectra are computed where they are used, whatever the route: for the first points when
``keep_spectra`` asks for spectra (figures), and for every point with ``split=True`` (the bulk/outlier split
ranks all eigenvalues by their distance from the spectrum's median, which extremal eigenvalues do not give;
the critical-load measurement asks for it, the headline stability fractions do not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.analysis.lanczos import Extremes, Operator, extremes
from hopbench.chunks import matrix_chunks
from hopbench.core.activations import Curvature
from hopbench.core.models import Model
from hopbench.errors import choice, number
from hopbench.threads import map_chunks

__all__ = [
    "ENERGY_VERDICTS",
    "EXTREMAL_MIN_N",
    "JACOBIAN_VERDICTS",
    "SPECTRUM_ROUTES",
    "StabilityConfig",
    "analyse",
    "eigvalsh",
    "jacobian_eigenvalues",
    "jacobian_verdicts",
    "split_spectrum",
]

JACOBIAN_VERDICTS = ("stable", "marginal", "unstable")
ENERGY_VERDICTS = ("certified", "inconclusive", "unstable")
#: which Jacobian verdict each energy verdict predicts (for ``agreement``)
PREDICTS = {"certified": "stable", "inconclusive": "marginal", "unstable": "unstable"}
SPECTRUM_ROUTES = ("auto", "extremal", "full")
#: ``spectrum=auto`` takes the extremal route from this many neurons on. Measured (one thread, Hebbian tanh
#: β = 4, 32 fixed points, ``make bench`` extremal case at N = 1024): the Jacobian verdicts alone gain 1.8× at
#: N = 128, 9× at 256, 11× at 384; the whole analysis, whose eq. 4 energy verdicts go to the fallback there,
#: 0.2× at 128 (Lanczos runs to N ≤ MAX_STEPS steps), 1.06× at 192, 1.3× at 256, 1.75× at 384.
EXTREMAL_MIN_N = 256
#: Lanczos steps at most; a point still undecided after them gets the full spectrum
MAX_STEPS = 160
#: a Lanczos bound within SLACK · max(1, spectral radius) of a verdict threshold does not decide the verdict
SLACK = 1e-10


@dataclass(frozen=True)
class StabilityConfig:
    """Stability-analysis settings (config ``stability``)."""

    tol: float = 1e-6  # eigenvalue tolerance, relative to max(1, spectral radius)
    dead_tol: float = 1e-6  # a neuron is dead when its Λ eigenvalue is <= dead_tol
    n_outliers: int = 2  # outliers of the bulk/outlier split (when a measurement asks for the split)
    spectrum: str = "auto"  # full | extremal | auto: how verdicts get their eigenvalues (module docstring)
    max_points: int = 256  # stored patterns analysed

    def __post_init__(self) -> None:
        number("stability.tol", self.tol, above=0, below=1)
        number("stability.dead_tol", self.dead_tol, above=0, below=1)
        number("stability.n_outliers", self.n_outliers, at_least=0, integer=True)
        choice("stability.spectrum", self.spectrum, SPECTRUM_ROUTES)
        number("stability.max_points", self.max_points, at_least=1, integer=True)

    def extremal(self, n: int) -> bool:
        """Whether the verdicts of N = n matrices come from extremal eigenvalues."""
        return self.spectrum == "extremal" or (self.spectrum == "auto" and n >= EXTREMAL_MIN_N)


def _relative_tol(eigs: Tensor, tol: float) -> Tensor:
    return tol * eigs.abs().amax(-1).clamp_min(1.0)


def _sym(M: Tensor) -> Tensor:
    return 0.5 * (M + M.transpose(-1, -2))


#: eigvalsh splits a batch over threads only when B·N³ reaches this (below it one LAPACK batch is faster)
SPLIT_WORK = 2**22


def eigvalsh(M: Tensor) -> Tensor:
    """Eigenvalues (B, N), ascending, of a batch of symmetric matrices (B, N, N) (lower triangle read).

    Large batches go through :func:`hopbench.threads.map_chunks`: one single-threaded LAPACK call per thread
    of the job's budget, which for the N ≤ 1000 matrices of this analysis beats LAPACK's own threading within
    each matrix (``make bench``, stability case). The values are those of ``torch.linalg.eigvalsh``.
    """
    if M.ndim != 3 or M.shape[0] * M.shape[-1] ** 3 < SPLIT_WORK:  # thread start-up costs ~0.3 ms
        return torch.linalg.eigvalsh(M)
    return map_chunks(torch.linalg.eigvalsh, M)


def _eigvals_maybe_symmetric(J: Tensor) -> tuple[Tensor, str]:
    """Eigenvalues (B, N) complex; eigvalsh on the rows where J is symmetric."""
    scale = J.abs().amax((-1, -2)).clamp_min(1.0)
    symmetric = (J - J.transpose(-1, -2)).abs().amax((-1, -2)) <= 1e-10 * scale
    out = torch.empty(J.shape[:-1], dtype=torch.complex128 if J.dtype == torch.float64 else torch.complex64,
                      device=J.device)
    if bool(symmetric.any()):
        out[symmetric] = eigvalsh(_sym(J[symmetric])).to(out.dtype)
    if bool((~symmetric).any()):
        out[~symmetric] = torch.linalg.eigvals(J[~symmetric])
    return out, "symmetric" if bool(symmetric.all()) else ("general" if not bool(symmetric.any()) else "mixed")


def _complex(eigs: Tensor) -> Tensor:
    return eigs.to(torch.complex128 if eigs.dtype == torch.float64 else torch.complex64)


def jacobian_eigenvalues(model: Model, x: Tensor) -> tuple[Tensor, str]:
    """Spectrum of the Jacobian at fixed points x (B, N) -> complex (B, N), and the route taken."""
    S = model.symmetric_jacobian(x)
    if S is not None:
        return _complex(eigvalsh(S)), "similar-symmetric"
    return _eigvals_maybe_symmetric(model.jacobian(x))


def _verdict(lo: Tensor, hi: Tensor, tau_lo: Tensor, tau_hi: Tensor, slack: Tensor | float = 0.0
             ) -> tuple[Tensor, Tensor]:
    """Verdict index of a value known to lie in [lo, hi] against a threshold τ known to lie in [tau_lo, tau_hi]
    (0: value < −τ, 1: |value| ≤ τ, 2: value > τ), and whether the intervals decide it with ``slack`` to spare.

    For an exact value (lo = hi, tau_lo = tau_hi, no slack) every verdict is decided.
    """
    below = hi < -tau_hi - slack
    above = lo > tau_hi + slack
    inside = (lo >= -tau_lo + slack) & (hi <= tau_lo - slack)
    return torch.where(below, 0, torch.where(above, 2, 1)), below | above | inside


def _thresholds(bounds: Extremes, tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """(τ_lo, τ_hi, slack) for a tolerance tol · max(1, spectral radius) from bounds on the radius."""
    r_lo, r_hi = bounds.radius
    return tol * r_lo.clamp_min(1.0), tol * r_hi.clamp_min(1.0), SLACK * r_hi.clamp_min(1.0)


def _max_verdict(bounds: Extremes, tol: float) -> tuple[Tensor, Tensor]:
    """Jacobian verdict from λ_max: (index into JACOBIAN_VERDICTS, decided)."""
    tau_lo, tau_hi, slack = _thresholds(bounds, tol)
    return _verdict(*bounds.max_interval, tau_lo, tau_hi, slack)


def _min_verdict(bounds: Extremes, tol: float) -> tuple[Tensor, Tensor]:
    """Energy verdict from λ_min: (index into ENERGY_VERDICTS, decided)."""
    tau_lo, tau_hi, slack = _thresholds(bounds, tol)
    index, decided = _verdict(*bounds.min_interval, tau_lo, tau_hi, slack)
    return 2 - index, decided


def _positive(bounds: Extremes, tol: float) -> tuple[Tensor, Tensor]:
    """Whether λ_min > tol · max(1, radius) (positive definite beyond the tolerance), and decided."""
    tau_lo, tau_hi, slack = _thresholds(bounds, tol)
    lo, hi = bounds.min_interval
    yes = lo > tau_hi + slack
    return lo > tau_hi, yes | (hi <= tau_lo - slack)


@dataclass(frozen=True)
class _Family:
    """A batch of B symmetric N × N matrices: dense by rows (for eigvalsh) and, optionally, matrix-free."""

    dense: Callable[[Tensor], Tensor]  # row index (b,) -> (b, N, N) symmetric
    operator: Operator | None = None  # row index (b,) -> v (b, N) ↦ A v


def _dense_operator(M: Tensor) -> Operator:
    return lambda rows: (lambda v, A=M[rows]: torch.bmm(A, v.unsqueeze(-1)).squeeze(-1))


def _start(n_rows: int, n: int, device: torch.device) -> tuple[Tensor, torch.Generator]:
    """Reproducible Gaussian start vectors (n_rows, N) and the generator for restarts."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n_rows, n, generator=gen, dtype=torch.float64).to(device), gen


def _bounds(family: _Family, B: int, n: int, device: torch.device, extremal: bool,
            decided: Callable[[Extremes], Tensor], head: int = 0) -> tuple[Extremes, Tensor, Tensor]:
    """Bounds on the extreme eigenvalues of the family, which rows went to the eigvalsh fallback, and the full
    spectra (head, N) of the first ``head`` rows (computed exactly whatever the route)."""
    every = torch.arange(B, device=device)
    if not extremal:
        eigs = eigvalsh(family.dense(every))
        return Extremes.exact(eigs), torch.zeros(B, dtype=torch.bool, device=device), eigs[:head]
    first = eigvalsh(family.dense(every[:head])) if head else torch.zeros(0, n, dtype=torch.float64, device=device)
    tail = every[head:]
    undecided = torch.zeros(tail.shape[0], dtype=torch.bool, device=device)
    rest = Extremes.exact(torch.zeros(0, n, dtype=torch.float64, device=device))
    if tail.numel():
        if family.operator is None:
            operator = _dense_operator(family.dense(tail))
        else:
            operator = lambda rows: family.operator(tail[rows])  # type: ignore[misc]  # noqa: E731
        start, gen = _start(tail.shape[0], n, device)
        rest = extremes(operator, start, max_steps=MAX_STEPS, generator=gen,
                        done=lambda bounds, hoped: decided(bounds) | ~decided(hoped))  # settled, or never will be
        undecided = ~decided(rest)
        rows = undecided.nonzero().squeeze(-1)
        if rows.numel():
            rest = rest.where(rows, Extremes.exact(eigvalsh(family.dense(tail[rows]))))
    fallback = torch.cat([torch.zeros(head, dtype=torch.bool, device=device), undecided])
    return Extremes.cat([Extremes.exact(first), rest]), fallback, first


def _rows(curvature: Curvature, rows: Tensor) -> Curvature:
    return Curvature(curvature.values[rows], curvature.diagonal)


def split_spectrum(eigs: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Bulk edge (B,) and k outliers (B, k) of complex spectra (B, N).

    Outliers are the k eigenvalues farthest from the spectrum's centre (median real part); the bulk edge is
    the largest real part of the rest. Outliers are ordered by decreasing real part.
    """
    if k <= 0:
        return eigs.real.amax(-1), eigs[..., :0]
    centre = eigs.real.median(-1, keepdim=True).values
    far = torch.topk((eigs - centre).abs(), k, dim=-1).indices
    outliers = torch.gather(eigs, -1, far)
    outliers = torch.gather(outliers, -1, torch.argsort(outliers.real, dim=-1, descending=True))
    mask = torch.ones_like(eigs.real, dtype=torch.bool).scatter(-1, far, False)
    bulk_edge = torch.where(mask, eigs.real, torch.tensor(-torch.inf, dtype=eigs.real.dtype)).amax(-1)
    return bulk_edge, outliers


def analyse(model: Model, x: Tensor, config: StabilityConfig | None = None, *, keep_spectra: bool | int = False,
            split: bool = False) -> dict[str, Tensor | str]:
    """Stability analysis of fixed points x (B, N) of ``model`` (convert both to float64 first).

    Returns per-point tensors (B,) keyed by name, verdict indices into JACOBIAN_VERDICTS / ENERGY_VERDICTS,
    plus ``jacobian_route`` and ``spectrum_route``. ``keep_spectra``: True keeps the complex Jacobian spectra
    of all points as ``spectrum`` (B, N), an integer k those of the first k points (k, N). ``split``: the
    bulk edge and ``config.n_outliers`` outliers of every point's Jacobian spectrum (computed in full). The
    points are analysed in ``matrix_chunks``, so the (B, N, N) matrices never exceed that memory.
    """
    cfg = config or StabilityConfig()
    keep = x.shape[0] if keep_spectra is True else int(keep_spectra)
    parts = []
    for chunk in matrix_chunks(x):
        parts.append(_analyse_chunk(model, chunk, cfg, min(keep, chunk.shape[0]), bool(keep_spectra), split))
        keep = max(0, keep - chunk.shape[0])
    return _join(parts)


def jacobian_verdicts(model: Model, x: Tensor, config: StabilityConfig | None = None) -> dict[str, Tensor | str]:
    """The Jacobian columns of :func:`analyse` alone (max_real, its error bound, jacobian_verdict, the route,
    eigvalsh_fallback) for fixed points x (B, N)."""
    cfg = config or StabilityConfig()
    parts = []
    for chunk in matrix_chunks(x):
        out: dict[str, Tensor | str] = {}
        out["eigvalsh_fallback"] = _jacobian(model, chunk, cfg, out, extremal=cfg.extremal(x.shape[-1]), keep=0,
                                             spectra=False, split=False)
        parts.append(out)
    return _join(parts)


def _join(parts: list[dict[str, Tensor | str]]) -> dict[str, Tensor | str]:
    """Per-chunk results as one: tensors concatenated, strings (routes) joined."""
    return {key: "+".join(dict.fromkeys(p[key] for p in parts)) if isinstance(value, str)  # type: ignore[misc]
            else torch.cat([p[key] for p in parts]) for key, value in parts[0].items()}


def _analyse_chunk(model: Model, x: Tensor, cfg: StabilityConfig, keep: int, spectra: bool,
                   split: bool) -> dict[str, Tensor | str]:
    B, n = x.shape
    extremal = cfg.extremal(n)
    out: dict[str, Tensor | str] = {"spectrum_route": "extremal" if extremal else "full"}
    fallback = _jacobian(model, x, cfg, out, extremal=extremal, keep=keep, spectra=spectra, split=split)

    energy = model.energy

    def hessian_vector(rows: Tensor) -> Callable[[Tensor], Tensor]:
        at = x[rows]
        return lambda v: torch.func.jvp(energy.gradient, (at,), (v,))[1]

    hessian = _Family(lambda rows: energy.hessian(x[rows]), hessian_vector)
    bounds, used, _ = _bounds(hessian, B, n, x.device, extremal, lambda e: _min_verdict(e, cfg.tol)[1])
    fallback |= used
    out["energy_min_eig"] = bounds.low
    out["energy_min_eig_error"] = bounds.low_error
    out["energy_verdict"] = _min_verdict(bounds, cfg.tol)[0]
    predicted = torch.tensor([JACOBIAN_VERDICTS.index(PREDICTS[v]) for v in ENERGY_VERDICTS], device=x.device)
    out["agreement"] = predicted[out["energy_verdict"]] == out["jacobian_verdict"]

    lam = model.curvature(x)
    out["dead_fraction"] = lam.nullity(cfg.dead_tol).to(x.dtype) / n
    if model.state == "u":  # eq. 12 from the factor G: an independent route to the Hessian at a fixed point
        bounds, used, _ = _bounds(_condition12(model, x), B, n, x.device, extremal,
                                  lambda e: _positive(e, cfg.tol)[1])
        out["condition12_min_eig"] = bounds.low
        out["condition12_holds"] = _positive(bounds, cfg.tol)[0]
    else:  # Prop. 4.2 for the y-state models
        family, alive = _range_family(model, x, lam, cfg.dead_tol)
        bounds, used, _ = _bounds(family, B, n, x.device, extremal, lambda e: _positive(e, cfg.tol)[1])
        inf = torch.tensor(torch.inf, dtype=x.dtype, device=x.device)
        out["range_min_eig"] = torch.where(alive, bounds.low, inf)
        out["range_certified"] = torch.where(alive, _positive(bounds, cfg.tol)[0], True)
    out["eigvalsh_fallback"] = fallback | used
    return out


def _jacobian(model: Model, x: Tensor, cfg: StabilityConfig, out: dict[str, Tensor | str], *, extremal: bool,
              keep: int, spectra: bool, split: bool) -> Tensor:
    """The Jacobian columns of ``out``; returns which points went to the eigvalsh fallback."""
    B, n = x.shape
    root = model.symmetric_root(x) if extremal and not split else None
    if root is None:
        eigs, route = jacobian_eigenvalues(model, x)
        max_real = eigs.real.amax(-1)
        out["max_real"] = max_real
        out["max_real_error"] = torch.zeros_like(max_real)
        tau = _relative_tol(eigs, cfg.tol)
        out["jacobian_verdict"] = _verdict(max_real, max_real, tau, tau)[0]
        out["jacobian_route"] = route
        if split:
            bulk_edge, outliers = split_spectrum(eigs, cfg.n_outliers)
            out["bulk_edge"] = bulk_edge
            for i in range(outliers.shape[-1]):
                out[f"outlier_{i + 1}_real"] = outliers[..., i].real
                out[f"outlier_{i + 1}_imag"] = outliers[..., i].imag
        if spectra:
            out["spectrum"] = eigs[:keep]
        return torch.zeros(B, dtype=torch.bool, device=x.device)

    W = model.net.W

    def jacobian_vector(rows: Tensor) -> Callable[[Tensor], Tensor]:
        r = _rows(root, rows)
        return lambda v: r.mv(r.mv(v) @ W.T) - v

    family = _Family(lambda rows: model.symmetric_jacobian(x[rows]), jacobian_vector)
    bounds, fallback, head = _bounds(family, B, n, x.device, True, lambda e: _max_verdict(e, cfg.tol)[1], keep)
    out["max_real"] = bounds.high
    out["max_real_error"] = bounds.high_error
    out["jacobian_verdict"] = _max_verdict(bounds, cfg.tol)[0]
    out["jacobian_route"] = "similar-symmetric"
    if spectra:
        out["spectrum"] = _complex(head)
    return fallback


def _condition12(model: Model, x: Tensor) -> _Family:
    """sym(−G ∂r) (eq. 12), dense and as products with G and ∂r (never forming G ∂r)."""
    G = model.energy.factor(x)
    dr = model.residual_jacobian(x)

    def product(rows: Tensor) -> Callable[[Tensor], Tensor]:
        g, d = G[rows], dr[rows]

        def mv(v: Tensor) -> Tensor:
            gdv = torch.bmm(g, torch.bmm(d, v.unsqueeze(-1)))
            dtgv = torch.bmm(d.transpose(1, 2), torch.bmm(g.transpose(1, 2), v.unsqueeze(-1)))
            return -0.5 * (gdv + dtgv).squeeze(-1)

        return mv

    return _Family(lambda rows: _sym(-G[rows] @ dr[rows]), product)


def _range_family(model: Model, x: Tensor, lam: Curvature, dead_tol: float) -> tuple[_Family, Tensor]:
    """Prop. 4.2: the matrix whose minimum eigenvalue decides whether Λ − ΛWΛ is positive definite on range(Λ),
    and which points have any alive neuron (B,).

    Tested in the congruent form I − Λ^{1/2}WΛ^{1/2} on range(Λ): Λ − ΛWΛ = Λ^{1/2}(I − Λ^{1/2}WΛ^{1/2})Λ^{1/2} and
    Λ^{1/2} is invertible on range(Λ), so both have the same inertia (Sylvester's law), but the congruent form
    is not scaled down by nearly dead neurons (Λ_i just above ``dead_tol``), whose eigenvalues in the literal
    form are ~Λ_i and would sink below any fixed tolerance. Rows where Λ is not positive semi-definite (a
    non-monotone activation such as gelu) have no real Λ^{1/2} and use the literal form. With P_a, P_d the
    projectors on range(Λ) and the dead subspace, the family is P_a M P_a + c P_d with c = tr(P_a M P_a) / rank
    P_a, the mean eigenvalue of M on range(Λ): c lies inside that block's spectrum, so the extremes of the
    family are those of M on range(Λ) (its minimum decides, its radius scales the tolerance).
    """
    W = _sym(model.net.W)
    psd = (lam.eigenvalues() >= -1e-12).all(-1)
    root = lam.sqrt()
    n = x.shape[-1]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)

    def dense_m(rows: Tensor) -> Tensor:
        M = eye - _rows(root, rows).sandwich(W)
        literal = ~psd[rows]
        if bool(literal.any()):
            here = _rows(lam, rows)
            M[literal] = (here.dense() - here.sandwich(W))[literal]
        return M

    if not lam.diagonal:
        P_d = lam.null_projector(dead_tol)
        rank = n - torch.diagonal(P_d, dim1=-2, dim2=-1).sum(-1)

        def dense(rows: Tensor) -> Tensor:
            M, p_d = dense_m(rows), P_d[rows]
            p_a = eye - p_d
            c = (M * p_a).sum((-1, -2)) / rank[rows].clamp_min(1.0)
            return _sym(p_a @ M @ p_a + c.view(-1, 1, 1) * p_d)

        return _Family(dense), rank > 0.5

    values = lam.values
    alive = (values.abs() > dead_tol).to(x.dtype)
    d = torch.where(psd.unsqueeze(-1), torch.ones_like(values), values)  # M = diag(d) − s W s
    s = torch.where(psd.unsqueeze(-1), root.values, values)
    c = ((d - s * s * torch.diagonal(W)) * alive).sum(-1) / alive.sum(-1).clamp_min(1.0)

    def dense(rows: Tensor) -> Tensor:
        a, M = alive[rows], dense_m(rows)
        return _sym(a.unsqueeze(-1) * M * a.unsqueeze(-2) + torch.diag_embed(c[rows].unsqueeze(-1) * (1 - a)))

    def product(rows: Tensor) -> Callable[[Tensor], Tensor]:
        a, dd, ss, cc = alive[rows], d[rows], s[rows], c[rows].unsqueeze(-1)

        def mv(v: Tensor) -> Tensor:
            u = a * v
            return a * (dd * u - ss * ((ss * u) @ W)) + cc * (1 - a) * v

        return mv

    return _Family(dense, product), alive.sum(-1) > 0.5


def summarise(table: dict[str, Tensor | str]) -> dict[str, float]:
    """Fractions over all analysed points (docs/design.md §5.4 metric names)."""
    jv, ev = table["jacobian_verdict"], table["energy_verdict"]
    out = {
        "stable_fraction": float((jv == 0).double().mean()),
        "marginal_fraction": float((jv == 1).double().mean()),
        "unstable_fraction": float((jv == 2).double().mean()),
        "energy_certified_fraction": float((ev == 0).double().mean()),
        "energy_inconclusive_fraction": float((ev == 1).double().mean()),
        "energy_unstable_fraction": float((ev == 2).double().mean()),
        "energy_jacobian_agreement": float(table["agreement"].double().mean()),
        "dead_fraction": float(torch.nanmean(table["dead_fraction"])),
    }
    if "condition12_holds" in table:
        out["condition12_fraction"] = float(table["condition12_holds"].double().mean())
    if "range_certified" in table:
        out["range_certified_fraction"] = float(table["range_certified"].double().mean())
    if "eigvalsh_fallback" in table:
        out["eigvalsh_fallback_fraction"] = float(table["eigvalsh_fallback"].double().mean())
    return out
