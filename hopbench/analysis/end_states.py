"""The end-state taxonomy (docs/design.md §5.3): every end state of a batch of trajectories gets exactly one class.

Classes, decided in this order for a trajectory that ends in state x with activity a (visible neurons):

- ``diverged``, ``max_time``: the trajectory's status (:mod:`hopbench.solve.trajectories`);
- ``stall``: the flow stopped (‖ẋ‖∞ < solver.tol, or the solver's own status ``stalled`` where it reports one) but
  x is no fixed point: the residual ‖r(x)‖∞ — r = W g(y) − y + b for the y-state models (eq. 1, 13),
  r = g(Wu + b) − u for the u-state (eq. 9) — exceeds solver.stall_factor·solver.tol, or Newton's method
  (:func:`hopbench.solve.polish` on a float64 copy of the model) does not bring it to its tolerance within
  ``cluster_distance`` of x. ẋ = R(x) r(x) vanishes with r ≠ 0 where R(x) is singular, e.g. R = I − WᵀΛ (eq. 9);
- otherwise x was polished to a fixed point x*, judged by its activity a* against the stored patterns ξ^μ,
  with ``scale`` = mean_μ ‖ξ^μ‖₂:
  ``trivial`` — ‖a*‖₂ ≤ ``trivial_tol``·scale (the zero / all-silent state, in activity space, so the same test
  holds for every activation);
  ``retrieved`` — cos(a*, ξ^target) ≥ threshold (cue trajectories, which have a target);
  ``other_pattern`` (cues) or ``memory`` (random starts, no target) — cos(a*, ξ^μ) ≥ threshold for some μ
  (|cos| for ±1 data, where −ξ is stored as well; so −ξ^target is ``other_pattern``);
  ``spurious`` — any other fixed point.

:data:`CUE_CLASSES` and :data:`START_CLASSES` list the classes of cue trajectories and of random starts; the
fixed-point classes are :data:`FIXED_POINT_CLASSES`. Fractions are over every trajectory, so they add up to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from hopbench.core.models import Model
from hopbench.core.system import System
from hopbench.errors import number
from hopbench.solve import STATUSES, SolverConfig, Trajectories, polish

__all__ = ["ALL_CLASSES", "CUE_CLASSES", "FIXED_POINT_CLASSES", "START_CLASSES", "STATUS_CLASS", "EndStateConfig",
           "EndStates", "classify", "cosine", "similarities"]

CUE_CLASSES = ("retrieved", "other_pattern", "spurious", "trivial", "stall", "max_time", "diverged")
START_CLASSES = ("memory", "spurious", "trivial", "stall", "max_time", "diverged")
FIXED_POINT_CLASSES = ("retrieved", "other_pattern", "memory", "spurious", "trivial")
ALL_CLASSES = (*FIXED_POINT_CLASSES, "stall", "max_time", "diverged")
#: the class each trajectory status decides by itself (``converged`` is decided by the fixed-point tests)
STATUS_CLASS = {"converged": None, "stalled": "stall", "max_time": "max_time", "diverged": "diverged"}


@dataclass(frozen=True)
class EndStateConfig:
    """Tolerances of the taxonomy (config ``end_states``); distances are relative to the mean stored-pattern norm
    in activity space."""

    fixed_point_tol: float = 1e-10  # Newton: ‖r‖∞ ≤ fixed_point_tol · max(1, ‖x*‖∞)
    trivial_tol: float = 0.01  # trivial when ‖a*‖₂ ≤ trivial_tol · scale
    cluster_distance: float = 0.05  # one point when ‖a − a′‖₂ ≤ cluster_distance · scale

    def __post_init__(self) -> None:
        number("end_states.fixed_point_tol", self.fixed_point_tol, above=0, below=1)
        number("end_states.trivial_tol", self.trivial_tol, above=0, below=1)
        number("end_states.cluster_distance", self.cluster_distance, above=0)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine (B,) of a, b (B, N). A zero vector matches nothing: its cosine is 0 by definition."""
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(norms > 0, (a * b).sum(-1) / norms.clamp_min(torch.finfo(a.dtype).tiny),
                       torch.zeros_like(norms))


def similarities(a: Tensor, patterns: Tensor, sign_symmetric: bool) -> Tensor:
    """Cosines (B, P) of activities a (B, N) with every stored pattern (|cos| for ±1 data: ±ξ match)."""
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    pn = patterns / patterns.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
    sims = an @ pn.T
    return sims.abs() if sign_symmetric else sims


@dataclass
class EndStates:
    """The class of each of B end states, with the evidence (CPU tensors)."""

    classes: tuple[str, ...]  # CUE_CLASSES or START_CLASSES
    index: Tensor  # (B,) int64 into ``classes``
    residual: Tensor  # (B,) ‖r‖∞ where the trajectory ended (float64; NaN where the state is not finite)
    polish_residual: Tensor  # (B,) ‖r‖∞ after Newton (NaN where not polished: not stopped, or a stall by ‖r‖)
    activity: Tensor  # (B, N_visible) float64: a* at polished fixed points, a where the trajectory ended else
    scale: float  # mean stored-pattern norm ‖ξ‖₂

    def names(self) -> list[str]:
        return [self.classes[i] for i in self.index.tolist()]

    def mask(self, *names: str) -> Tensor:
        """Which end states (B,) are in any of the classes ``names``."""
        return torch.isin(self.index, torch.tensor([self.classes.index(n) for n in names], dtype=torch.long))

    def counts(self) -> dict[str, int]:
        """Count per class, every class listed; they sum to B."""
        return {name: int((self.index == i).sum()) for i, name in enumerate(self.classes)}

    def scalars(self, prefix: str) -> dict[str, float | dict[str, int]]:
        """``<prefix>_<class>_fraction`` for every class (fractions of all B) and ``<prefix>_end_state_counts``."""
        n = max(1, self.index.numel())
        counts = self.counts()
        return {**{f"{prefix}_{name}_fraction": count / n for name, count in counts.items()},
                f"{prefix}_end_state_counts": counts}

    def attractors(self, config: EndStateConfig) -> np.ndarray:
        """Labels (B,) of distinct non-memory fixed points, −1 for every other end state.

        Spurious fixed points are linked when ‖a* − a*′‖₂ ≤ cluster_distance·scale (Euclidean in activity space,
        so states near zero are not told apart by the direction of what is left of them); connected components
        are labelled 0…k−1. Every trivial end state is the one attractor with label k.
        """
        labels = np.full(self.index.numel(), -1)
        spur = self.mask("spurious")
        a = self.activity[spur]
        if a.shape[0]:
            adjacency = torch.cdist(a, a) <= config.cluster_distance * self.scale
            labels[spur.numpy()] = connected_components(csr_matrix(adjacency.numpy()), directed=False)[1]
        labels[self.mask("trivial").numpy()] = labels.max() + 1
        return labels


def _status_lookup(classes: tuple[str, ...]) -> Tensor:
    """Per trajectory status (:data:`hopbench.solve.STATUSES`), the class index it decides alone, or −1 for a
    status whose end state is tested (``converged``); a status without a class here is an error."""
    unknown = [name for name in STATUSES if name not in STATUS_CLASS]
    if unknown:
        raise ValueError(f"trajectory status {unknown[0]!r} has no end-state class (known: {', '.join(STATUS_CLASS)})")
    return torch.tensor([-1 if STATUS_CLASS[name] is None else classes.index(STATUS_CLASS[name])
                         for name in STATUSES], dtype=torch.long)


def classify(system: System, model: Model, traj: Trajectories, solver: SolverConfig, *, threshold: float,
             targets: Tensor | None = None, config: EndStateConfig | None = None) -> EndStates:
    """The class of every end state ``traj.x`` (B, N) of ``model``; ``targets`` (B,) are the stored-pattern
    indices of cue trajectories (classes :data:`CUE_CLASSES`), None for random starts (:data:`START_CLASSES`).

    Residuals, Newton's method and the activity tests run in float64; only end states where the flow stopped
    with a small residual are polished.
    """
    cfg = config or EndStateConfig()
    classes = START_CLASSES if targets is None else CUE_CLASSES
    X = system.data.patterns.double()
    scale = float(X.norm(dim=-1).mean())
    m64 = model.to(dtype=torch.float64)
    x = traj.x.detach().to(torch.float64)
    B = x.shape[0]
    index = _status_lookup(classes)[traj.status.cpu()]
    finite = torch.isfinite(x).all(-1)
    residual = torch.full((B,), math.nan, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        residual[finite] = m64.residual(x[finite]).abs().amax(-1)
        activity = m64.readout(x)[:, system.net.visible].cpu()
    candidate = ((index < 0).to(x.device) & finite & (residual <= solver.stall_factor * solver.tol)).cpu()
    polish_residual = torch.full((B,), math.nan, dtype=torch.float64)
    fixed = torch.zeros(B, dtype=torch.bool)
    if bool(candidate.any()):
        polished = polish(m64, x[candidate.to(x.device)], tol=cfg.fixed_point_tol)
        with torch.no_grad():
            a_star = m64.readout(polished.x)[:, system.net.visible].cpu()
        near = (a_star - activity[candidate]).norm(dim=-1) <= cfg.cluster_distance * scale
        fixed[candidate] = polished.converged.cpu() & near
        polish_residual[candidate] = polished.residual.cpu()
        activity[candidate] = torch.where(fixed[candidate].unsqueeze(-1), a_star, activity[candidate])
    index[(index < 0) & ~fixed] = classes.index("stall")
    a = activity[fixed]
    trivial = a.norm(dim=-1) <= cfg.trivial_tol * scale
    memory = similarities(a, X, system.data.sign_symmetric).amax(-1) >= threshold
    if targets is None:
        kind = torch.where(memory, classes.index("memory"), classes.index("spurious"))
    else:
        hit = cosine(a, X[targets.cpu()[fixed]]) >= threshold
        kind = torch.where(hit, classes.index("retrieved"),
                           torch.where(memory, classes.index("other_pattern"), classes.index("spurious")))
    index[fixed] = torch.where(trivial, classes.index("trivial"), kind)
    return EndStates(classes, index, residual.cpu(), polish_residual, activity, scale)
