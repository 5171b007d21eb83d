"""The measurements of docs/design.md §5 on a System, batched over cues and states.

Each measurement returns a :class:`Measurement`: scalar metrics (names as in the results format), per-item
tables (one row per cue, state or fixed point) and raw data for figures. Fractions are over every item:
diverged and unfinished trajectories count, and a quantity that cannot be computed is ``None`` with a count
that says why, never a silent zero. Every end state of a trajectory has a class of
:mod:`hopbench.analysis.end_states`; its metrics are ``<measurement>_<class>_fraction`` (over all trajectories)
and ``<measurement>_end_state_counts``, with the measurement ``retrieval`` (cues), ``random`` (the random starts of
the spurious-memory search) or ``lyapunov`` (the cue trajectories of the Lyapunov check, counts only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hopbench.analysis.descent import condition11, energy_rate
from hopbench.analysis.end_states import EndStateConfig, EndStates, classify, cosine, similarities
from hopbench.analysis.stability import ENERGY_VERDICTS, JACOBIAN_VERDICTS, StabilityConfig, analyse, summarise
from hopbench.core.data import Corruption
from hopbench.core.models import Model
from hopbench.core.system import System, generator
from hopbench.solve import SolverConfig, Trajectories, integrate, polish

__all__ = ["Measurement", "lyapunov_check", "make_cues", "retrieval", "retrieve", "spurious", "stability_at_patterns"]


@dataclass
class Measurement:
    scalars: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


def _finite_mean(x: Tensor) -> float | None:
    finite = torch.isfinite(x)
    return float(x[finite].mean()) if bool(finite.any()) else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _status_scalars(traj: Trajectories) -> dict[str, Any]:
    counts = traj.counts()
    return {"status_counts": counts, "converged_fraction": counts["converged"] / max(1, len(traj.status)),
            "mean_nfe": float(traj.nfe.double().mean()), "mean_time": float(traj.t.mean())}


def _activity(system: System, model: Model, x: Tensor) -> Tensor:
    """Visible activities (B, N_visible) of states x, as float64 on CPU."""
    return model.readout(x)[:, system.net.visible].detach().double().cpu()


def make_cues(system: System, cue: Corruption, n_cues: int) -> tuple[Tensor, Tensor]:
    """(pattern index (B,), corrupted cues (B, N_visible)), the same for every model of a comparison."""
    X = system.data.patterns
    index = torch.arange(X.shape[0]).repeat_interleave(n_cues)
    cues = cue.apply(X[index], system.data.kind, generator(system.seed, "cues"))
    return index, cues


def _start(system: System, model: Model, activities: Tensor) -> Tensor:
    a0 = system.net.embed(activities.to(system.device, system.dtype))
    return model.initial_state(a0)


def _end_state_columns(ends: EndStates) -> dict[str, Any]:
    """Per-item columns of the taxonomy: class, residual where the trajectory ended, residual after Newton."""
    return {"end_state": ends.names(), "residual": ends.residual.numpy(),
            "polish_residual": ends.polish_residual.numpy()}


def retrieve(system: System, model: Model, index: Tensor, cues: Tensor, solver: SolverConfig, *, threshold: float,
             record_energy: bool = False) -> tuple[Trajectories, dict[str, Tensor]]:
    """Integrate from cues (B, N_visible) of the stored patterns ``index`` (B,); per-cue outcomes (B,) on CPU:
    ``overlap`` with the target, ``success`` (overlap ≥ threshold), the most similar pattern ``nearest`` and its
    similarity ``best`` (± for ±1 data), ``nearest_ok``. Shared by :func:`retrieval` and the capacity search (which
    needs no end-state classes, only the outcome of each cue)."""
    X = system.data.patterns
    traj = integrate(model, _start(system, model, cues), solver, record_energy=record_energy)
    a = _activity(system, model, traj.x)
    overlap = cosine(a, X[index])
    best, nearest = similarities(a, X, system.data.sign_symmetric).max(-1)
    return traj, {"overlap": overlap, "success": torch.isfinite(overlap) & (overlap >= threshold),
                  "nearest": nearest, "best": best, "nearest_ok": torch.isfinite(best) & (best >= threshold)}


def retrieval(system: System, model: Model, cue: Corruption, solver: SolverConfig, *, n_cues: int,
              threshold: float, record_energy: bool = False, end_states: EndStateConfig | None = None) -> Measurement:
    """§5.1: success when cosine(final activity, target) ≥ threshold (whatever the trajectory's status);
    nearest_accuracy when the final activity is within the threshold of its most similar stored pattern (± for ±1
    data). Every end state is classified (``retrieval_<class>_fraction``, classes
    :data:`~hopbench.analysis.end_states.CUE_CLASSES`): ``retrieval_retrieved_fraction`` counts only cues that end
    at a polished fixed point at the target, while the accuracy also counts trajectories that stopped near the
    target without reaching one (max_time, stall)."""
    X = system.data.patterns
    index, cues = make_cues(system, cue, n_cues)
    traj, out = retrieve(system, model, index, cues, solver, threshold=threshold, record_energy=record_energy)
    overlap, success, nearest_ok, best, nearest = (out[k] for k in ("overlap", "success", "nearest_ok", "best",
                                                                     "nearest"))
    ends = classify(system, model, traj, solver, threshold=threshold, targets=index, config=end_states)
    scalars = {
        "retrieval_accuracy": float(success.double().mean()),
        "nearest_accuracy": float(nearest_ok.double().mean()),
        "mean_overlap": _finite_mean(overlap),
        "n_nonfinite_overlap": int((~torch.isfinite(overlap)).sum()),
        **ends.scalars("retrieval"),
        **_status_scalars(traj),
    }
    table = pd.DataFrame({
        "pattern": index.numpy(), "cue": np.tile(np.arange(n_cues), X.shape[0]),
        "status": traj.status_names(), "t": traj.t.cpu().numpy(), "nfe": traj.nfe.cpu().numpy(),
        "speed": traj.speed.double().cpu().numpy(), "overlap": overlap.numpy(), "success": success.numpy(),
        "nearest_pattern": nearest.numpy(), "nearest_similarity": best.numpy(), "nearest_success": nearest_ok.numpy(),
        **_end_state_columns(ends),
    })
    return Measurement(scalars, {"retrieval": table}, {"trajectories": traj, "overlap": overlap, "end_states": ends})


def spurious(system: System, model: Model, solver: SolverConfig, *, n_states: int, threshold: float,
             end_states: EndStateConfig | None = None) -> Measurement:
    """§5.3: M random starts, each end state classified (``random_<class>_fraction``, classes
    :data:`~hopbench.analysis.end_states.START_CLASSES`).

    ``spurious_rate`` = spurious / (memory + spurious + trivial): the share of spurious fixed points among all end
    states that Newton polished to a fixed point (None when there is none); stalls, max_time and diverged
    trajectories are not in it. ``n_spurious_attractors``: distinct spurious fixed points (Euclidean distance in
    activity space, :meth:`~hopbench.analysis.end_states.EndStates.attractors`); the trivial state, its own class,
    is one more attractor (the ``attractor`` column).
    """
    cfg = end_states or EndStateConfig()
    states = system.data.sample(n_states, generator(system.seed, "states"))
    traj = integrate(model, _start(system, model, states), solver)
    ends = classify(system, model, traj, solver, threshold=threshold, config=cfg)
    best, nearest = similarities(ends.activity, system.data.patterns, system.data.sign_symmetric).max(-1)
    labels = ends.attractors(cfg)
    counts = ends.counts()
    scalars = {
        "spurious_rate": _ratio(counts["spurious"], counts["memory"] + counts["spurious"] + counts["trivial"]),
        "n_spurious_attractors": len(set(labels[ends.mask("spurious").numpy()].tolist())),
        **ends.scalars("random"),
        "spurious_status_counts": traj.counts(),
    }
    table = pd.DataFrame({"state": np.arange(n_states), "status": traj.status_names(), **_end_state_columns(ends),
                          "best_pattern": nearest.numpy(), "best_similarity": best.numpy(),
                          "relative_norm": (ends.activity.norm(dim=-1) / ends.scale).numpy(), "attractor": labels})
    return Measurement(scalars, {"spurious": table}, {"end_states": ends})


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
                          keep_spectra: bool | int = False, split: bool = False) -> Measurement:
    """§5.4: the fixed point reached from each stored pattern, polished by Newton, analysed in float64
    (``keep_spectra`` and ``split`` as in :func:`hopbench.analysis.stability.analyse`)."""
    X = system.data.patterns[:max_points]
    x, traj = fixed_points_from_patterns(system, model, solver, max_points, follow_dynamics=follow_dynamics)
    m64 = model.to(dtype=torch.float64)
    B = x.shape[0]
    finite = torch.isfinite(x).all(-1)
    polished = polish(m64, x[finite])
    table = analyse(m64, polished.x, config, keep_spectra=keep_spectra, split=split)
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


def lyapunov_check(system: System, model: Model, cue: Corruption, solver: SolverConfig, *, n_states: int,
                   tol: float, trace_rtol: float, threshold: float, trajectories: Trajectories | None = None,
                   end_states: EndStates | None = None, end_state_config: EndStateConfig | None = None
                   ) -> Measurement:
    """§5.6 (a) at cues, random states and states along trajectories; (b) energy rises between solver steps
    along cue trajectories: ``trajectories`` with an energy trace and their classified ``end_states`` (both or
    neither, e.g. from :func:`retrieval`), else cue trajectories integrated and classified here. Their end states
    are counted in ``lyapunov_end_state_counts`` and listed with the energy rises in the ``lyapunov_trajectories``
    table."""
    if (trajectories is None) != (end_states is None):
        raise ValueError("lyapunov_check: give trajectories and their end_states together, or neither")
    k = max(1, n_states // 3)
    index, cues = make_cues(system, cue, math.ceil(k / system.data.n_patterns))
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
        end_states = classify(system, model, trajectories, solver, threshold=threshold, targets=index,
                              config=end_state_config)
    rises = trajectories.trace.increases(trace_rtol)
    scalars["trajectory_energy_increase_fraction"] = float(rises.double().mean())
    scalars["lyapunov_end_state_counts"] = end_states.counts()
    per_trajectory = pd.DataFrame({"trajectory": np.arange(len(rises)), "status": trajectories.status_names(),
                                   **_end_state_columns(end_states), "energy_increase": rises.cpu().numpy()})
    return Measurement(scalars, {"lyapunov": pd.DataFrame(rows), "lyapunov_trajectories": per_trajectory},
                       {"trace": trajectories.trace})
