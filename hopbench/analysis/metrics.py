"""The measurements of DESIGN §5 on a System, batched over cues and states.

Each measurement returns a :class:`Measurement`: scalar metrics (names as in the results format), per-item
tables (one row per cue, state or fixed point) and raw data for figures. Fractions are over every item:
diverged and unfinished trajectories count, and a quantity that cannot be computed is ``None`` with a count
that says why, never a silent zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor

from hopbench.analysis.descent import condition11, energy_rate
from hopbench.analysis.stability import ENERGY_VERDICTS, JACOBIAN_VERDICTS, StabilityConfig, analyse, summarise
from hopbench.core.data import corrupt
from hopbench.core.models import Model
from hopbench.core.system import System, generator
from hopbench.solve import STATUSES, SolverConfig, Trajectories, integrate, polish

__all__ = ["Measurement", "cosine", "lyapunov_check", "retrieval", "spurious", "stability_at_patterns"]


@dataclass
class Measurement:
    scalars: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


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


def _finite_mean(x: Tensor) -> float | None:
    finite = torch.isfinite(x)
    return float(x[finite].mean()) if bool(finite.any()) else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _status_scalars(traj: Trajectories) -> dict[str, Any]:
    counts = traj.counts()
    return {"status_counts": counts, "converged_fraction": counts["converged"] / max(1, len(traj.status)),
            "mean_nfe": float(traj.nfe.double().mean()), "mean_time": float(traj.t.mean())}


def stalled(model: Model, traj: Trajectories, solver: SolverConfig) -> tuple[Tensor, Tensor]:
    """Residual ‖r‖∞ (B,) at the final states, and which trajectories stalled: status ``stalled`` (ẋ = R r ≈ 0
    while ‖r‖∞ > stall_factor·tol: a singular R stops the flow away from any fixed point), or, from a solver that
    does not report it, converged with ‖r‖∞ > stall_factor·tol."""
    with torch.no_grad():
        residual = model.residual(traj.x).abs().amax(-1).double().cpu()
    status = traj.status.cpu()
    late = (status == 0) & (residual > solver.stall_factor * solver.tol)
    return residual, (status == STATUSES.index("stalled")) | late


def _activity(system: System, model: Model, x: Tensor) -> Tensor:
    """Visible activities (B, N_visible) of states x, as float64 on CPU."""
    return model.readout(x)[:, system.net.visible].detach().double().cpu()


def make_cues(system: System, cue: tuple[str, dict], n_cues: int) -> tuple[Tensor, Tensor]:
    """(pattern index (B,), corrupted cues (B, N_visible)), the same for every model of a comparison."""
    X = system.data.patterns
    index = torch.arange(X.shape[0]).repeat_interleave(n_cues)
    cues = corrupt(cue[0], cue[1], X[index], system.data.kind, generator(system.seed, "cues"))
    return index, cues


def _start(system: System, model: Model, activities: Tensor) -> Tensor:
    a0 = system.net.embed(activities.to(system.device, system.dtype))
    return model.initial_state(a0)


def retrieval(system: System, model: Model, cue: tuple[str, dict], solver: SolverConfig, *, n_cues: int,
              threshold: float, record_energy: bool = False) -> Measurement:
    """§5.1: success when cosine(final activity, target) ≥ threshold; nearest_accuracy when the final activity
    is within the threshold of its most similar stored pattern (± for ±1 data)."""
    X = system.data.patterns
    index, cues = make_cues(system, cue, n_cues)
    traj = integrate(model, _start(system, model, cues), solver, record_energy=record_energy)
    a = _activity(system, model, traj.x)
    overlap = cosine(a, X[index])
    success = torch.isfinite(overlap) & (overlap >= threshold)
    sims = similarities(a, X, system.data.sign_symmetric)
    best, nearest = sims.max(-1)
    nearest_ok = torch.isfinite(best) & (best >= threshold)
    residual, stall = stalled(model, traj, solver)
    scalars = {
        "retrieval_accuracy": float(success.double().mean()),
        "nearest_accuracy": float(nearest_ok.double().mean()),
        "mean_overlap": _finite_mean(overlap),
        "n_nonfinite_overlap": int((~torch.isfinite(overlap)).sum()),
        "stalled_fraction": float(stall.double().mean()),
        **_status_scalars(traj),
    }
    table = pd.DataFrame({
        "pattern": index.numpy(), "cue": np.tile(np.arange(n_cues), X.shape[0]),
        "status": traj.status_names(), "t": traj.t.cpu().numpy(), "nfe": traj.nfe.cpu().numpy(),
        "speed": traj.speed.double().cpu().numpy(), "overlap": overlap.numpy(), "success": success.numpy(),
        "nearest_pattern": nearest.numpy(), "nearest_similarity": best.numpy(), "nearest_success": nearest_ok.numpy(),
        "residual": residual.numpy(), "stalled": stall.numpy(),
    })
    return Measurement(scalars, {"retrieval": table}, {"trajectories": traj, "overlap": overlap})


def _clusters(a: Tensor, sign_symmetric: bool, threshold: float) -> np.ndarray:
    """Connected components of activities (S, N) linked at cosine ≥ threshold; zero activities form one."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=int)
    zero = a.norm(dim=-1) == 0
    sims = similarities(a, a, sign_symmetric)
    adjacency = (sims >= threshold) | (zero.unsqueeze(0) & zero.unsqueeze(1))
    return connected_components(csr_matrix(adjacency.numpy()), directed=False)[1]


def spurious(system: System, model: Model, solver: SolverConfig, *, n_states: int, threshold: float,
             cluster_threshold: float) -> Measurement:
    """§5.3: of the random starts that converge, the fraction whose fixed point matches no stored pattern."""
    X = system.data.patterns
    states = system.data.sample(n_states, generator(system.seed, "states"))
    traj = integrate(model, _start(system, model, states), solver)
    a = _activity(system, model, traj.x)
    best, nearest = similarities(a, X, system.data.sign_symmetric).max(-1)
    converged = (traj.status == 0).cpu()
    memory = torch.isfinite(best) & (best >= threshold)
    spur = converged & ~memory
    residual, stall = stalled(model, traj, solver)
    labels = np.full(n_states, -1)
    labels[spur.numpy()] = _clusters(a[spur], system.data.sign_symmetric, cluster_threshold)
    n_conv = int(converged.sum())
    scalars = {
        "spurious_rate": _ratio(int(spur.sum()), n_conv),
        "n_spurious_attractors": len(set(labels[labels >= 0].tolist())),
        "spurious_non_converged_fraction": 1.0 - n_conv / n_states,
        "spurious_stalled_fraction": _ratio(int((spur & stall).sum()), int(spur.sum())),
        "spurious_status_counts": traj.counts(),
    }
    table = pd.DataFrame({"state": np.arange(n_states), "status": traj.status_names(),
                          "best_pattern": nearest.numpy(), "best_similarity": best.numpy(),
                          "is_memory": memory.numpy(), "spurious_cluster": labels, "residual": residual.numpy(),
                          "stalled": stall.numpy()})
    return Measurement(scalars, {"spurious": table})


def fixed_points_from_patterns(system: System, model: Model, solver: SolverConfig, max_points: int, *,
                               follow_dynamics: bool = True) -> tuple[Tensor, Trajectories | None]:
    """States reached from the first ``max_points`` stored patterns (float64, before polishing)."""
    X = system.data.patterns[:max_points]
    x0 = _start(system, model, X)
    if not follow_dynamics:
        return x0.double(), None
    traj = integrate(model, x0, solver)
    return traj.x.double(), traj


def stability_at_patterns(system: System, model: Model, solver: SolverConfig, config: StabilityConfig, *,
                          max_points: int, threshold: float, follow_dynamics: bool = True,
                          keep_spectra: bool = False) -> Measurement:
    """§5.4: the fixed point reached from each stored pattern, polished by Newton, analysed in float64."""
    X = system.data.patterns[:max_points]
    x, traj = fixed_points_from_patterns(system, model, solver, max_points, follow_dynamics=follow_dynamics)
    m64 = model.to(dtype=torch.float64)
    B = x.shape[0]
    finite = torch.isfinite(x).all(-1)
    polished = polish(m64, x[finite])
    table = analyse(m64, polished.x, config, keep_spectra=keep_spectra)
    full = _expand(table, finite, B)
    xs = torch.full_like(x, math.nan)
    xs[finite] = polished.x
    stored = cosine(_activity(system, m64, xs), X) >= threshold
    residual = torch.full((B,), math.nan, dtype=torch.float64)
    residual[finite.cpu()] = polished.residual.cpu()
    scalars = {**summarise(full), "stored_fraction": float(stored.double().mean()),
               "unresolved_fixed_points": int((~finite).sum()),
               "polish_residual_max": None if not bool(finite.any()) else float(polished.residual.max()),
               "polish_failed": int((~polished.converged).sum())}
    if "range_certified" not in full:
        scalars.pop("range_certified_fraction", None)
    rows = {"pattern": np.arange(B), "stored": stored.numpy(), "polish_residual": residual.numpy(),
            "jacobian_verdict": [(*JACOBIAN_VERDICTS, "unresolved")[i] for i in full["jacobian_verdict"].tolist()],
            "energy_verdict": [(*ENERGY_VERDICTS, "unresolved")[i] for i in full["energy_verdict"].tolist()]}
    for key, value in full.items():
        if isinstance(value, Tensor) and value.ndim == 1 and key not in ("jacobian_verdict", "energy_verdict"):
            rows[key] = value.cpu().numpy()
    if traj is not None:
        rows["status"] = traj.status_names()
    extras = {"route": table["jacobian_route"], "fixed_points": xs}
    if keep_spectra:
        extras["spectra"] = table["spectrum"].cpu()
    return Measurement(scalars, {"stability": pd.DataFrame(rows)}, extras)


def _expand(table: dict, rows: Tensor, B: int) -> dict:
    """Per-point results for all B points; points that could not be analysed (non-finite) are ``unresolved``
    (verdict index 3, False flags, NaN values), so fractions stay over all B."""
    out: dict = {}
    for key, value in table.items():
        if not isinstance(value, Tensor) or value.ndim != 1:
            continue
        if key.endswith("_verdict"):
            fill = torch.full((B,), 3, dtype=value.dtype, device=value.device)
        elif value.dtype == torch.bool:
            fill = torch.zeros(B, dtype=torch.bool, device=value.device)
        else:
            fill = torch.full((B,), math.nan, dtype=value.dtype, device=value.device)
        fill[rows.to(value.device)] = value
        out[key] = fill.cpu()
    return out


def _along_trajectories(model: Model, x0: Tensor, solver: SolverConfig) -> Tensor:
    """States at t = 0.5, 2 and 8 along the trajectories from x0 (3·B, N), integrated by the configured solver
    (a stiff system with solver=ros34pw2 too); the flow's own states: no Newton finish, no early stall (a row that
    converges stays where it stopped)."""
    flow = replace(solver, newton_finish=False, early_stall=False)
    states, x, t = [], x0, 0.0
    for t1 in (0.5, 2.0, 8.0):
        x = integrate(model, x, replace(flow, t_max=t1 - t)).x
        states.append(x)
        t = t1
    return torch.cat(states)


def lyapunov_check(system: System, model: Model, cue: tuple[str, dict], solver: SolverConfig, *, n_states: int,
                   tol: float, trace_rtol: float, trajectories: Trajectories | None = None) -> Measurement:
    """§5.6 (a) at cues, random states and states along trajectories; (b) energy rises between solver steps
    along the cue trajectories (``trajectories`` must carry an energy trace; else they are integrated here)."""
    k = max(1, n_states // 3)
    _, cues = make_cues(system, cue, math.ceil(k / system.data.n_patterns))
    cue_states = _start(system, model, cues[torch.randperm(cues.shape[0], generator=generator(system.seed, "lyap"))
                                           [:k]])
    random_states = _start(system, model, system.data.sample(k, generator(system.seed, "lyapunov-states")))
    along = _along_trajectories(model, cue_states[: max(1, k // 3)], solver)
    states = torch.cat([cue_states, random_states, along]).double()
    kinds = ["cue"] * cue_states.shape[0] + ["random"] * k + ["trajectory"] * along.shape[0]
    m64 = model.to(dtype=torch.float64)
    rate = energy_rate(m64, states, tol=tol)
    finite_rel = rate["relative"][torch.isfinite(rate["relative"])]
    scalars: dict[str, Any] = {
        "lyapunov_violation_fraction": float(rate["violation"].double().mean()),
        "lyapunov_max_relative_violation": float(finite_rel.max()) if finite_rel.numel() else None,
        "lyapunov_nonfinite_states": int((~torch.isfinite(rate["relative"])).sum()),
        "lyapunov_states": int(states.shape[0]),
    }
    rows = {"kind": kinds, "rate": rate["rate"].cpu().numpy(), "relative": rate["relative"].cpu().numpy(),
            "violation": rate["violation"].cpu().numpy()}
    if m64.energy.factor_exact:
        cond = condition11(m64, states)
        scalars["condition11_fraction"] = float(cond["holds"].double().mean())
        rows["condition11_min_eig"] = cond["min_eig"].cpu().numpy()
    if trajectories is None or trajectories.trace is None:
        trajectories = integrate(model, _start(system, model, cues), solver, record_energy=True)
    rises = trajectories.trace.increases(trace_rtol)
    scalars["trajectory_energy_increase_fraction"] = float(rises.double().mean())
    return Measurement(scalars, {"lyapunov": pd.DataFrame(rows)}, {"trace": trajectories.trace})

