"""Bounds on the extreme eigenvalues of batches of symmetric operators: Lanczos, full reorthogonalisation.

A batch of symmetric N × N operators A_b is given only through products: ``operator(rows)`` returns a function
v ↦ (A_b v_b) for v of shape (len(rows), N), so matrix-free products (Λ^{1/2} W Λ^{1/2} v as one GEMM with the
shared W, Hessian-vector products by forward-mode autograd) serve a whole batch at once.

After m steps from a start q the Ritz values θ_1 ≤ … ≤ θ_m (eigenvalues of the tridiagonal T_m) satisfy
λ_1 ≤ θ_1 and θ_m ≤ λ_N (Courant–Fischer). The other sides need an argument, because a Krylov space cannot
see an eigenvalue whose eigenvector is (nearly) orthogonal to q, and the residual norm of a Ritz pair only
says that *some* eigenvalue is near it (inside a cluster that one need not be λ_1). The bound used here is
the Chebyshev argument behind the Kaniel–Paige–Saad theorem, turned a-posteriori:

    Let c² ≤ (u_1ᵀq)², σ ≥ λ_N − λ_1 and k = m − 1. If λ_1 < θ_1 − e, take a = θ_1 − e/2 and
    p(λ) = T_k((λ_N + a − 2λ)/(λ_N − a)) (|p| ≤ 1 on [a, λ_N]); y = p(A)q lies in the Krylov space, so
    θ_1 ≤ yᵀAy / yᵀy, which forces c² T_k(1 + e/σ)² ≤ σ/e. Hence λ_1 ≥ θ_1 − x·σ, with x = x*(k, c²) the root
    of c² T_k(1 + x)² x = 1 (the same for every matrix), and likewise λ_N ≤ θ_m + x·σ.
    Applying both ends to the true spread σ ≤ (θ_m − θ_1) + 2xσ gives σ ≤ (θ_m − θ_1)/(1 − 2x) when x < 1/2.

So λ_1 ∈ [θ_1 − e, θ_1] and λ_N ∈ [θ_m, θ_m + e] with e = x (θ_m − θ_1)/(1 − 2x): about 1 % of the Ritz spread
after 160 steps, 6 % after 64. The one assumption is on the random start: (u_1ᵀq)² ≥ c² = START_WEIGHT / N,
which a Gaussian start violates with probability √(2·START_WEIGHT/π) ≈ 1e-7 per bound. After a breakdown
(β ≈ 0: the Krylov space is invariant and holds every eigenvector the start touches) or N steps the Ritz
values are exact and e = 0; a breakdown restarts from a fresh random vector orthogonal to the basis (β = 0),
so T stays the projection of A on the basis. Full reorthogonalisation (classical Gram–Schmidt, twice) keeps
the basis orthogonal to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache

import torch
from torch import Tensor

__all__ = ["START_WEIGHT", "Extremes", "Operator", "checkpoints", "extremes", "resolution"]

#: ``operator(rows)`` -> the batched product v (len(rows), N) ↦ A v for those rows of the batch
Operator = Callable[[Tensor], Callable[[Tensor], Tensor]]

#: a breakdown is a β below this times the operator's scale seen so far
BREAKDOWN = 1e-12
#: the bounds assume (uᵀq)² ≥ START_WEIGHT / N for the extreme eigenvectors u and the start q
START_WEIGHT = 1e-14


@dataclass(frozen=True)
class Extremes:
    """Bounds on the extreme eigenvalues of B symmetric matrices: λ_min ∈ [low − low_error, low],
    λ_max ∈ [high, high + high_error]; all (B,). Exact spectra have zero errors."""

    low: Tensor
    low_error: Tensor
    high: Tensor
    high_error: Tensor

    @classmethod
    def exact(cls, eigs: Tensor) -> Extremes:
        """From full real spectra (B, N) (any order)."""
        zero = torch.zeros_like(eigs[..., 0])
        return cls(eigs.amin(-1), zero, eigs.amax(-1), zero.clone())

    @classmethod
    def cat(cls, parts: list[Extremes]) -> Extremes:
        return cls(*(torch.cat([getattr(p, k) for p in parts]) for k in ("low", "low_error", "high", "high_error")))

    @property
    def min_interval(self) -> tuple[Tensor, Tensor]:
        return self.low - self.low_error, self.low

    @property
    def max_interval(self) -> tuple[Tensor, Tensor]:
        return self.high, self.high + self.high_error

    @property
    def radius(self) -> tuple[Tensor, Tensor]:
        """Bounds (lower, upper) on the spectral radius max |λ|."""
        lo = torch.maximum(self.low.abs(), self.high.abs())
        hi = torch.maximum((self.low - self.low_error).abs(), (self.high + self.high_error).abs())
        return lo, torch.maximum(lo, hi)

    def select(self, mask: Tensor) -> Extremes:
        return Extremes(self.low[mask], self.low_error[mask], self.high[mask], self.high_error[mask])

    def where(self, rows: Tensor, other: Extremes) -> Extremes:
        """These bounds with ``rows`` (index) replaced by ``other``'s (len(rows),) values."""
        def put(mine: Tensor, theirs: Tensor) -> Tensor:
            out = mine.clone()
            out[rows] = theirs
            return out

        return Extremes(put(self.low, other.low), put(self.low_error, other.low_error),
                        put(self.high, other.high), put(self.high_error, other.high_error))


def _log_chebyshev(k: int, x: float) -> float:
    """log T_k(1 + x) for x > 0 (no overflow)."""
    a = math.acosh(1.0 + x)
    return k * a + math.log1p(math.exp(-2.0 * k * a)) - math.log(2.0)


@cache
def resolution(steps: int, n: int) -> float:
    """The factor r with |λ_extreme − θ_extreme| ≤ r · (Ritz spread) after ``steps`` Lanczos steps on N = n
    (module docstring: r = x/(1 − 2x), x the root of c² T_{steps−1}(1 + x)² x = 1); inf when none holds yet."""
    if steps >= n:
        return 0.0
    log_c2, k = math.log(START_WEIGHT / n), steps - 1
    if k < 1:
        return math.inf
    lo, hi = 1e-300, 1.0
    for _ in range(200):  # bisection in log x on the increasing left side
        mid = math.sqrt(lo * hi)
        if log_c2 + 2.0 * _log_chebyshev(k, mid) + math.log(mid) > 0.0:
            hi = mid
        else:
            lo = mid
    return hi / (1.0 - 2.0 * hi) if hi < 0.5 else math.inf


def checkpoints(max_steps: int) -> list[int]:
    """Step counts after which Ritz values are computed and decided rows leave: 32, 48, 64, 96, 128, …"""
    out, m = [], 32
    while m < max_steps:
        out.append(m)
        m += max(16, m // 2 // 16 * 16)
    return [*out, max_steps]


def _ritz(alpha: Tensor, beta: Tensor, exact: Tensor, factor: float) -> Extremes:
    """Extreme Ritz values of T_m = tridiag(β_{1..m−1}, α_{1..m}, β_{1..m−1}) (b, m) and their bounds."""
    m = alpha.shape[-1]
    T = torch.diag_embed(alpha) + torch.diag_embed(beta[:, : m - 1], 1) + torch.diag_embed(beta[:, : m - 1], -1)
    theta = torch.linalg.eigvalsh(T.cpu()).to(alpha.device)
    low, high = theta[:, 0], theta[:, -1]
    spread = (high - low) * factor if math.isfinite(factor) else torch.full_like(low, math.inf)
    error = torch.where(exact, torch.zeros_like(low), spread)
    return Extremes(low, error, high, error.clone())


def _orthogonalise(w: Tensor, Q: Tensor) -> Tensor:
    """w (b, N) minus its projection on the columns of Q (b, N, k), twice ('twice is enough')."""
    for _ in range(2):
        w = w - torch.bmm(Q, torch.bmm(w.unsqueeze(1), Q).transpose(1, 2)).squeeze(-1)
    return w


def extremes(operator: Operator, start: Tensor, *, max_steps: int, generator: torch.Generator,
             done: Callable[[Extremes, Extremes], Tensor] | None = None) -> Extremes:
    """Bounds on λ_min and λ_max of B symmetric operators from at most ``max_steps`` Lanczos steps.

    ``start`` (B, N) are the start vectors (normalised here). At each of :func:`checkpoints` the bounds are
    computed and rows for which ``done(bounds, hoped)`` (B',) is True stop (their bounds are final);
    ``hoped`` are the same Ritz values with the error that ``max_steps`` steps would leave, so ``done`` can
    also stop rows that no number of steps will settle. Others go on until ``max_steps`` (capped at N).
    ``generator`` (CPU) draws restart vectors after a breakdown.
    """
    B, N = start.shape
    steps = max(1, min(max_steps, N))
    dtype, dev = start.dtype, start.device
    result = Extremes(*(torch.full((B,), torch.nan, dtype=dtype, device=dev) for _ in range(4)))
    rows = torch.arange(B, device=dev)
    Q = torch.empty(B, N, steps, dtype=dtype, device=dev)
    alpha = torch.zeros(B, steps, dtype=dtype, device=dev)
    beta = torch.zeros(B, steps, dtype=dtype, device=dev)
    scale = torch.zeros(B, dtype=dtype, device=dev)
    broken = torch.zeros(B, dtype=torch.bool, device=dev)
    v = start / start.norm(dim=-1, keepdim=True)
    matvec = operator(rows)
    marks = set(checkpoints(steps)) if done is not None else {steps}
    for j in range(steps):
        Q[:, :, j] = v
        w = matvec(v)
        alpha[:, j] = (w * v).sum(-1)
        w = _orthogonalise(w, Q[:, :, : j + 1])
        b = w.norm(dim=-1)
        scale = torch.maximum(scale, torch.maximum(alpha[:, j].abs(), b))
        broke = b <= BREAKDOWN * scale
        broken |= broke
        beta[:, j] = torch.where(broke, torch.zeros_like(b), b)
        if j + 1 in marks:
            bounds = _ritz(alpha[:, : j + 1], beta[:, : j + 1], broken, resolution(j + 1, N))
            if j + 1 == steps:
                finished = torch.ones_like(broken)
            else:
                error = _hoped(bounds, steps, N, broken)
                hoped = replace(bounds, low_error=error, high_error=error.clone())
                finished = done(bounds, hoped)  # type: ignore[misc]
            if bool(finished.any()):
                result = result.where(rows[finished], bounds.select(finished))
                keep = ~finished
                if not bool(keep.any()):
                    break
                rows, Q, alpha, beta, scale, broken = (t[keep] for t in (rows, Q, alpha, beta, scale, broken))
                w, broke = w[keep], broke[keep]
                matvec = operator(rows)
        if j + 1 == steps:
            break
        if bool(broke.any()):  # restart in the orthogonal complement of the basis
            fresh = torch.randn(int(broke.sum()), N, generator=generator, dtype=dtype).to(dev)
            w[broke] = _orthogonalise(fresh, Q[broke, :, : j + 1])
        v = w / w.norm(dim=-1, keepdim=True)
    return result


def _hoped(bounds: Extremes, steps: int, n: int, exact: Tensor) -> Tensor:
    """The error of these Ritz values after ``steps`` steps (the Ritz spread kept)."""
    error = (bounds.high - bounds.low) * resolution(steps, n)
    return torch.where(exact, torch.zeros_like(error), error)
