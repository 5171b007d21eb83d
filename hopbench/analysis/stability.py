"""Stability of fixed points (docs/design.md §5.4–5.5; paper eq. 6, Prop. 4.2, eq. 12).

For a batch of fixed points x* (B, N) of a float64 model:
- the Jacobian verdict from max Re λ(J) (stable < −tol < marginal < tol < unstable), with a symmetric
  eigensolver whenever J is similar to a symmetric matrix (R = I: Λ^{1/2}WΛ^{1/2} − I) or is symmetric;
- the energy verdict from the minimum eigenvalue of the energy's Hessian (certified / inconclusive /
  unstable, relative tolerance);
- the range test of Prop. 4.2 for y-state models: Λ − ΛWΛ restricted to range(Λ) positive definite;
- condition (12) for the u-state model: sym(G(I − ΛW)) ≻ 0 with G from eq. 11 (equal to the energy Hessian
  at an exact fixed point, computed by another route);
- the dead fraction nullity(Λ)/N and the bulk/outlier split of the spectrum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hopbench.chunks import matrix_chunks
from hopbench.core.models import Model
from hopbench.errors import number
from hopbench.threads import map_chunks

__all__ = [
    "ENERGY_VERDICTS",
    "JACOBIAN_VERDICTS",
    "StabilityConfig",
    "analyse",
    "eigvalsh",
    "jacobian_eigenvalues",
    "split_spectrum",
]

JACOBIAN_VERDICTS = ("stable", "marginal", "unstable")
ENERGY_VERDICTS = ("certified", "inconclusive", "unstable")
#: which Jacobian verdict each energy verdict predicts (for ``agreement``)
PREDICTS = {"certified": "stable", "inconclusive": "marginal", "unstable": "unstable"}


@dataclass(frozen=True)
class StabilityConfig:
    """Stability-analysis settings (config ``stability``)."""

    tol: float = 1e-6  # eigenvalue tolerance, relative to max(1, spectral scale)
    dead_tol: float = 1e-6  # a neuron is dead when its Λ eigenvalue is <= dead_tol
    n_outliers: int = 2
    max_points: int = 256  # stored patterns analysed

    def __post_init__(self) -> None:
        number("stability.tol", self.tol, above=0, below=1)
        number("stability.dead_tol", self.dead_tol, above=0, below=1)
        number("stability.n_outliers", self.n_outliers, at_least=0, integer=True)
        number("stability.max_points", self.max_points, at_least=1, integer=True)


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


def jacobian_eigenvalues(model: Model, x: Tensor) -> tuple[Tensor, str]:
    """Spectrum of the Jacobian at fixed points x (B, N) -> complex (B, N), and the route taken."""
    S = model.symmetric_jacobian(x)
    if S is not None:
        eigs = eigvalsh(S)
        return eigs.to(torch.complex128 if eigs.dtype == torch.float64 else torch.complex64), "similar-symmetric"
    return _eigvals_maybe_symmetric(model.jacobian(x))


def _verdict(values: Tensor, tol: Tensor, names: tuple[str, str, str], flip: bool) -> Tensor:
    """Index into ``names``: value < −tol -> 0, |value| <= tol -> 1, value > tol -> 2 (reversed if flip)."""
    idx = torch.where(values < -tol, 0, torch.where(values > tol, 2, 1))
    return 2 - idx if flip else idx


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


def _min_eig(M: Tensor) -> tuple[Tensor, Tensor]:
    eigs = eigvalsh(_sym(M))
    return eigs[..., 0], eigs


def analyse(model: Model, x: Tensor, config: StabilityConfig | None = None, *,
            keep_spectra: bool = False) -> dict[str, Tensor | str]:
    """Stability analysis of fixed points x (B, N) of ``model`` (convert both to float64 first).

    Returns per-point tensors (B,) keyed by name, verdict indices into JACOBIAN_VERDICTS / ENERGY_VERDICTS,
    plus ``jacobian_route``; with ``keep_spectra`` also the complex spectra (B, N). The points are analysed in
    ``solver.matrix_chunks``, so the (B, N, N) Jacobians and Hessians never exceed that memory.
    """
    cfg = config or StabilityConfig()
    parts = [_analyse_chunk(model, chunk, cfg, keep_spectra) for chunk in matrix_chunks(x)]
    return {key: "+".join(dict.fromkeys(p[key] for p in parts)) if isinstance(value, str)
            else torch.cat([p[key] for p in parts]) for key, value in parts[0].items()}


def _analyse_chunk(model: Model, x: Tensor, cfg: StabilityConfig, keep_spectra: bool) -> dict[str, Tensor | str]:
    out: dict[str, Tensor | str] = {}
    eigs, route = jacobian_eigenvalues(model, x)
    max_real = eigs.real.amax(-1)
    out["max_real"] = max_real
    out["jacobian_verdict"] = _verdict(max_real, _relative_tol(eigs, cfg.tol), JACOBIAN_VERDICTS, flip=False)
    out["jacobian_route"] = route
    bulk_edge, outliers = split_spectrum(eigs, cfg.n_outliers)
    out["bulk_edge"] = bulk_edge
    for i in range(outliers.shape[-1]):
        out[f"outlier_{i + 1}_real"] = outliers[..., i].real
        out[f"outlier_{i + 1}_imag"] = outliers[..., i].imag
    if keep_spectra:
        out["spectrum"] = eigs

    hessian_min, hessian_eigs = _min_eig(model.energy.hessian(x))
    out["energy_min_eig"] = hessian_min
    out["energy_verdict"] = _verdict(hessian_min, _relative_tol(hessian_eigs, cfg.tol), ENERGY_VERDICTS, flip=True)
    predicted = torch.tensor([JACOBIAN_VERDICTS.index(PREDICTS[v]) for v in ENERGY_VERDICTS], device=x.device)
    out["agreement"] = predicted[out["energy_verdict"]] == out["jacobian_verdict"]

    lam = model.curvature(x)
    out["dead_fraction"] = lam.nullity(cfg.dead_tol).to(x.dtype) / x.shape[-1]
    if model.state == "u":  # eq. 12 from the factor G: an independent route to the Hessian at a fixed point
        condition, cond_eigs = _min_eig(-model.energy.factor(x) @ model.residual_jacobian(x))
        out["condition12_min_eig"] = condition
        out["condition12_holds"] = condition > _relative_tol(cond_eigs, cfg.tol)
    else:  # Prop. 4.2 for the y-state models
        out["range_min_eig"], out["range_certified"] = _range_test(model, x, cfg)
    return out


def _range_test(model: Model, x: Tensor, cfg: StabilityConfig) -> tuple[Tensor, Tensor]:
    """Prop. 4.2: is Λ − ΛWΛ positive definite on range(Λ)? Min eigenvalue (+inf when every neuron is dead), verdict.

    Tested in the congruent form I − Λ^{1/2}WΛ^{1/2} on range(Λ): Λ − ΛWΛ = Λ^{1/2}(I − Λ^{1/2}WΛ^{1/2})Λ^{1/2} and
    Λ^{1/2} is invertible on range(Λ), so both have the same inertia (Sylvester's law), but the congruent form
    is not scaled down by nearly dead neurons (Λ_i just above ``dead_tol``), whose eigenvalues in the literal
    form are ~Λ_i and would sink below any fixed tolerance. Rows where Λ is not positive semi-definite (a
    non-monotone activation such as gelu) have no real Λ^{1/2} and use the literal form. The dead subspace is
    lifted above the spectrum, so the smallest eigenvalue comes from the range of Λ unless that range is empty.
    """
    lam = model.curvature(x)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    M = eye - _sym(lam.sqrt().sandwich(model.net.W))
    psd = (lam.eigenvalues() >= -1e-12).all(-1)
    if not bool(psd.all()):
        M[~psd] = _sym(lam.dense() - lam.sandwich(model.net.W))[~psd]
    P_d = lam.null_projector(cfg.dead_tol)
    P_a = eye - P_d
    lift = 1.0 + M.abs().sum((-1, -2)).view(-1, 1, 1)
    eigs = eigvalsh(_sym(P_a @ M @ P_a + lift * P_d))
    alive = torch.diagonal(P_d, dim1=-2, dim2=-1).sum(-1) < x.shape[-1] - 0.5
    smallest = torch.where(alive, eigs[..., 0], torch.tensor(torch.inf, dtype=x.dtype, device=x.device))
    tol = cfg.tol * M.abs().amax((-1, -2)).clamp_min(1.0)
    return smallest, smallest > tol


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
    return out
