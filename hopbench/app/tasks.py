"""Tasks (config group ``task``): evaluate, train, capacity, critical_load, lyapunov (and reproduce, in
hopbench.repro.task).

A task is an option object built from its parameters (checked there); :meth:`run` takes the checked
:class:`~hopbench.app.job.Job` and a :class:`~hopbench.app.tracking.Recorder`, runs its measurements for every
model of the job (original and modified side by side with ``compare=true``, on the same weights, patterns
and cues), records tables and figures, and returns the results' content.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from hopbench.analysis.capacity import CapacityConfig, RetrievalTrial, search
from hopbench.analysis.curves import alpha_crossing
from hopbench.analysis.metrics import Measurement, lyapunov_check, retrieval, spurious, stability_at_patterns
from hopbench.analysis.training import TrainConfig, train
from hopbench.app import plots
from hopbench.app.job import Job, Task
from hopbench.app.tracking import Recorder
from hopbench.core.models import Model
from hopbench.core.system import System, build_system
from hopbench.errors import ConfigError, flag, number
from hopbench.registry import Registry

__all__ = ["TASKS", "Capacity", "CriticalLoad", "Evaluate", "LyapunovCheck", "Train", "model_info"]

log = logging.getLogger(__name__)
TASKS: Registry[Task] = Registry("task")


def _progress(items: Iterable, desc: str) -> Iterable:
    return tqdm(list(items), desc=desc, leave=False, disable=None)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def model_info(model: Model) -> dict:
    return {"model": model.name, "strategy": model.strategy.name, "energy": model.energy.name,
            "state": model.state, **model.backing.as_dict()}


def _collect(tables: dict[str, list[pd.DataFrame]], measurement: Measurement, **columns: Any) -> None:
    for key, frame in measurement.tables.items():
        frame = frame.copy()
        for i, (col, value) in enumerate(columns.items()):
            frame.insert(i, col, value)
        tables[key].append(frame)


def _write_tables(recorder: Recorder, tables: dict[str, list[pd.DataFrame]]) -> None:
    for key, frames in tables.items():
        recorder.table(key, pd.concat(frames, ignore_index=True))


def _result(job: Job, per_model: dict[str, dict], info: dict[str, dict], **extra: Any) -> dict:
    primary = info[job.model.name]
    return {"metrics": per_model[job.model.name], "comparison": per_model if job.compare else None,
            "models": info, "theory_backed": primary["theory_backed"], "theory_reasons": primary["theory_reasons"],
            **extra}


def _label(job: Job) -> str:
    spec = job.system
    return f"{spec.weights.name} / {spec.activation.name}, N={spec.n_neurons}"


@dataclass(frozen=True, kw_only=True)
class EvaluationParts:
    """Which measurements of docs/design.md §5 an evaluation runs."""

    retrieval: bool = True
    spurious: bool = True
    stability: bool = True
    lyapunov: bool = True

    def __post_init__(self) -> None:
        for part in ("retrieval", "spurious", "stability", "lyapunov"):
            flag(f"task.{part}", getattr(self, part))


@TASKS.register("evaluate")
@dataclass(frozen=True, kw_only=True)
class Evaluate(EvaluationParts, Task):
    """Retrieval, spurious memories, stability at the stored patterns and the Lyapunov check (§5.1, 5.3,
    5.4, 5.6)."""

    name = "evaluate"

    def run(self, job: Job, recorder: Recorder) -> dict:
        return _evaluate(job, self, recorder, job.build())


@TASKS.register("train")
@dataclass(frozen=True, kw_only=True)
class Train(TrainConfig, EvaluationParts, Task):
    """Learn W and b from the configured storage rule (§7), save them, then evaluate everything of §5.

    Every validation also measures stability at the stored patterns for each model of the run (with
    ``task.stability``): how the dead fraction and the energy verdicts change as the weights learn."""

    name = "train"

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        EvaluationParts.__post_init__(self)

    def check(self, job: Job) -> None:
        if job.system.weights.hidden:
            raise ConfigError("weights", job.system.weights.name, "task=train needs every neuron to carry the "
                              "patterns (this structure has a hidden layer)",
                              allowed=["hebbian", "pseudoinverse", "storkey", "goe", "ginibre", "hierarchical"])

    def run(self, job: Job, recorder: Recorder) -> dict:
        def probe(system: System) -> dict:
            out = {}
            for name, partner in job.partners(system).items():
                m = stability_at_patterns(partner, partner.model, job.solver, job.stability,
                                          max_points=job.stability.max_points, threshold=job.retrieval.threshold)
                out.update({f"{name}_{k}": m.scalars[k] for k in ("stable_fraction", "dead_fraction",
                                                                   "energy_inconclusive_fraction")})
            return out

        result = train(build_system(job.system), self, cue=job.cue, solver=job.solver,
                       threshold=job.retrieval.threshold, probe=probe if self.stability else None,
                       on_log=recorder.log)
        trained = result.system
        recorder.arrays("trained_weights", W=trained.net.W.cpu().numpy(), b=trained.net.b.cpu().numpy())
        history = pd.DataFrame(result.history)
        recorder.table("training", history)
        label = f"{job.model.name}, {job.system.activation.name}, {job.system.weights.name} start"
        recorder.figure("training_loss", lambda: plots.training_curve(
            history, f"task=train, objective={self.objective} ({label}): stopped by {result.stop_reason}, "
                     f"kept step {result.best_step}"))
        if self.stability:
            recorder.figure("training_dead_neurons", lambda: plots.training_stability(
                history, f"Stored fixed points as the weights learn ({label})"))
        out = _evaluate(job, self, recorder, job.partners(trained))
        out["metrics"].update({
            "train_loss_initial": result.history[0]["loss"], "train_loss_final": result.history[-1]["loss"],
            "train_steps": result.steps_run, "train_stop_reason": result.stop_reason,
            "train_best_step": result.best_step, "val_accuracy_initial": result.history[0]["val_accuracy"],
            "val_accuracy_best": result.best["val_accuracy"], "train_time_s": result.seconds})
        return out


def _evaluate(job: Job, parts: EvaluationParts, recorder: Recorder, systems: dict[str, System]) -> dict:
    per_model: dict[str, dict] = {}
    info: dict[str, dict] = {}
    tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
    overlaps, traces, spectra = {}, {}, {}
    for name, system in _progress(systems.items(), "models"):
        model, metrics, timing = system.model, {}, {}
        record = parts.lyapunov and job.lyapunov.record_trajectories
        rec_traj = rec_ends = None
        start = _clock(system.device)
        if parts.retrieval:
            log.info("%s: retrieval of %d cues", name, system.data.n_patterns * job.retrieval.n_cues)
            m = retrieval(system, model, job.cue, job.solver, n_cues=job.retrieval.n_cues,
                          threshold=job.retrieval.threshold, record_energy=record, end_states=job.end_states)
            metrics.update(m.scalars)
            _collect(tables, m, model=name)
            overlaps[name] = m.extras["overlap"].numpy()
            rec_traj, rec_ends = m.extras["trajectories"], m.extras["end_states"]
            timing["retrieval_s"] = _clock(system.device) - start
        if parts.spurious:
            log.info("%s: spurious-memory search from %d random states", name, job.spurious.n_states)
            t0 = _clock(system.device)
            m = spurious(system, model, job.solver, n_states=job.spurious.n_states,
                         threshold=job.retrieval.threshold, end_states=job.end_states)
            metrics.update(m.scalars)
            _collect(tables, m, model=name)
            timing["spurious_s"] = _clock(system.device) - t0
        if parts.stability:
            log.info("%s: stability at up to %d stored patterns", name, job.stability.max_points)
            t0 = _clock(system.device)
            m = stability_at_patterns(system, model, job.solver, job.stability, max_points=job.stability.max_points,
                                      threshold=job.retrieval.threshold, keep_spectra=plots.SPECTRA_POINTS)
            metrics.update(m.scalars)
            metrics["jacobian_route"] = m.extras["route"]
            _collect(tables, m, model=name)
            spectra[name] = m.extras["spectra"].numpy()
            timing["stability_s"] = _clock(system.device) - t0
        if parts.lyapunov:
            log.info("%s: Lyapunov check at %d states", name, job.lyapunov.n_states)
            t0 = _clock(system.device)
            m = lyapunov_check(system, model, job.cue, job.solver, n_states=job.lyapunov.n_states,
                               tol=job.lyapunov.tol, trace_rtol=job.lyapunov.trajectory_rtol,
                               threshold=job.retrieval.threshold, trajectories=rec_traj, end_states=rec_ends,
                               end_state_config=job.end_states)
            metrics.update(m.scalars)
            _collect(tables, m, model=name)
            traces[name] = m.extras["trace"]
            timing["lyapunov_s"] = _clock(system.device) - t0
        metrics["time_s"] = _clock(system.device) - start
        metrics["timing"] = timing
        per_model[name] = metrics
        info[name] = model_info(model)
    _write_tables(recorder, tables)
    label = _label(job)
    if overlaps:
        recorder.figure("retrieval_overlaps", lambda: plots.overlap_histogram(
            overlaps, job.retrieval.threshold, f"Retrieval ({label})"))
    if traces:
        recorder.figure("energy_trajectories", lambda: plots.energy_traces(
            traces, f"Energy along cue trajectories ({label})"))
    if spectra:
        recorder.figure("jacobian_spectra", lambda: plots.spectra(
            spectra, f"Jacobian spectra at stored patterns ({label})"))
    return _result(job, per_model, info)


@TASKS.register("capacity")
@dataclass(frozen=True, kw_only=True)
class Capacity(CapacityConfig, Task):
    """The largest load α_c with retrieval accuracy ≥ ``level`` (§5.2): P grows ×``growth`` from ``p_min`` until a
    load fails, then bisection inside that bracket; each load is decided on as few cues as can decide it exactly
    (at most ``chunk`` integrated at a time); ``p_max`` None: N."""

    name = "capacity"

    def largest_system(self, job: Job) -> tuple[int, int]:
        p = self.p_max or job.system.n_neurons
        return p, min(self.chunk, p * job.retrieval.n_cues)

    def check(self, job: Job) -> None:
        n = job.system.n_neurons
        number("task.p_min", self.p_min, at_most=self.p_max or n, integer=True)
        job.system.weights.check(self.p_max or n, n, job.system.activation)

    def run(self, job: Job, recorder: Recorder) -> dict:
        per_model, info, rows = {}, {}, []
        for kind in job.models():
            start = time.perf_counter()
            metrics, points, model = self._search(job, kind.name)
            metrics["time_s"] = time.perf_counter() - start
            per_model[kind.name], info[kind.name] = metrics, model
            rows.extend(points)
        frame = pd.DataFrame(rows)
        recorder.table("capacity_points", frame)
        recorder.figure("capacity", lambda: plots.capacity_curve(
            frame, self.level, f"Retrieval vs load ({_label(job)})"))
        return _result(job, per_model, info)

    def _search(self, job: Job, name: str) -> tuple[dict, list[dict], dict]:
        N = job.system.n_neurons
        info: dict = {}

        def system_for(P: int) -> System:
            system = job.build(n_patterns=P)[name]
            info.update(model_info(system.model))
            return system

        trial = RetrievalTrial(system_for, job.cue, job.solver, n_cues=job.retrieval.n_cues,
                               threshold=job.retrieval.threshold)
        bar = tqdm(desc=f"capacity {name}", unit="cue", leave=False, disable=None)
        last = {"P": 0, "used": 0}

        def progress(P: int, used: int, total: int, bracket: tuple[int | None, int | None]) -> None:
            lo, hi = ("?" if b is None else b for b in bracket)
            bar.set_postfix_str(f"bracket [{lo}, {hi}], P = {P}: {used}/{total} cues", refresh=False)
            bar.update(used - last["used"] if last["P"] == P else used)
            if last["P"] != P:
                log.info("%s: capacity bracket [%s, %s], evaluating P = %d", name, lo, hi, P)
            last.update(P=P, used=used)

        result = search(trial, n_neurons=N, config=self, progress=progress)
        bar.close()
        points = [{"model": name, "n_patterns": pt.n_patterns, "load": pt.n_patterns / N, "passed": pt.passed,
                   **trial.summary(pt.n_patterns), "cues_used": pt.cues_used, "cues_total": pt.cues_total,
                   "accuracy_lower": pt.accuracy_bounds[0], "accuracy_upper": pt.accuracy_bounds[1]}
                  for pt in result.points]
        metrics = {"capacity_alpha": result.alpha, "capacity_alpha_interpolated": result.alpha_interpolated,
                   "capacity_note": result.note, "capacity_points": len(points), "capacity_cues": result.cues_used}
        return metrics, sorted(points, key=lambda r: r["n_patterns"]), info


def _default_loads() -> list[float]:
    return [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


@TASKS.register("critical_load")
@dataclass(frozen=True, kw_only=True)
class CriticalLoad(Task):
    """Stable fraction of the stored fixed points across ``loads``, and α_S where it falls through ``level``
    (§5.5, §6). ``integrate``: follow the dynamics from each stored pattern before polishing;
    ``spectrum_load``: the load whose Jacobian spectrum is plotted (None: the middle one)."""

    name = "critical_load"
    loads: list[float] = field(default_factory=_default_loads)
    level: float = 0.5
    integrate: bool = True
    spectrum_load: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.loads, list | tuple) or not self.loads:
            raise ConfigError("task.loads", self.loads, "must be a non-empty list of loads, e.g. [0.1,0.2]")
        for alpha in self.loads:
            number("task.loads", alpha, above=0)
        number("task.level", self.level, above=0, below=1)
        flag("task.integrate", self.integrate)
        if self.spectrum_load is not None:
            number("task.spectrum_load", self.spectrum_load, above=0)

    def _patterns(self, job: Job) -> list[int]:
        return [max(1, round(a * job.system.n_neurons)) for a in self.loads]

    def largest_system(self, job: Job) -> tuple[int, int]:
        p = max(self._patterns(job))
        return p, p

    def check(self, job: Job) -> None:
        for p in self._patterns(job):
            job.system.weights.check(p, job.system.n_neurons, job.system.activation)

    def run(self, job: Job, recorder: Recorder) -> dict:
        loads = [float(a) for a in self.loads]
        spectrum_load = self.spectrum_load or loads[len(loads) // 2]
        per_model, info, rows = {}, {}, []
        tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
        spectra: dict[str, Any] = {}
        alpha_s: dict[str, float | None] = {}
        for kind in job.models():
            name = kind.name
            start = time.perf_counter()
            for alpha, P in _progress(zip(loads, self._patterns(job), strict=True), f"loads {name}"):
                system = job.build(n_patterns=P)[name]
                info[name] = model_info(system.model)
                m = stability_at_patterns(system, system.model, job.solver, job.stability,
                                          max_points=job.stability.max_points, threshold=job.retrieval.threshold,
                                          follow_dynamics=self.integrate,
                                          keep_spectra=abs(alpha - spectrum_load) < 1e-12, split=True)
                table = m.tables["stability"]
                rows.append({"model": name, "load": alpha, "n_patterns": P,
                             **{k: v for k, v in m.scalars.items() if not isinstance(v, dict)},
                             "bulk_edge_mean": float(table["bulk_edge"].mean()),
                             **{f"{c}_mean": float(table[c].mean()) for c in table
                                if c.startswith("outlier_") and c.endswith("_real")}})
                _collect(tables, m, model=name, load=alpha)
                if "spectra" in m.extras:
                    spectra[f"{name} (α={alpha:g})"] = m.extras["spectra"].numpy()
            mine = [r for r in rows if r["model"] == name]
            a_s, note = alpha_crossing([r["load"] for r in mine], [r["stable_fraction"] for r in mine], self.level)
            alpha_s[name] = a_s
            per_model[name] = {"alpha_s": a_s, "alpha_s_note": note,
                               "stable_fraction_by_load": {f"{r['load']:g}": r["stable_fraction"] for r in mine},
                               "stored_fraction_by_load": {f"{r['load']:g}": r["stored_fraction"] for r in mine},
                               "time_s": time.perf_counter() - start}
        frame = pd.DataFrame(rows)
        recorder.table("critical_load", frame)
        _write_tables(recorder, tables)
        label = f"{job.system.activation.name}, {job.system.dataset.name}, N={job.system.n_neurons}"
        recorder.figure("critical_load", lambda: plots.critical_load_curve(
            frame, self.level, f"Stability of stored fixed points ({label})", alpha_s))
        if spectra:
            recorder.figure("jacobian_spectrum", lambda: plots.spectra(
                spectra, f"Jacobian spectrum at α = {spectrum_load:g} ({label})"))
        return _result(job, per_model, info)


@TASKS.register("lyapunov")
@dataclass(frozen=True, kw_only=True)
class LyapunovCheck(Task):
    """The Lyapunov check of §5.6 alone: does the configured energy really not increase?"""

    name = "lyapunov"

    def run(self, job: Job, recorder: Recorder) -> dict:
        per_model, info, traces = {}, {}, {}
        tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
        for name, system in job.build().items():
            start = time.perf_counter()
            m = lyapunov_check(system, system.model, job.cue, job.solver, n_states=job.lyapunov.n_states,
                               tol=job.lyapunov.tol, trace_rtol=job.lyapunov.trajectory_rtol,
                               threshold=job.retrieval.threshold, end_state_config=job.end_states)
            per_model[name] = {**m.scalars, "time_s": time.perf_counter() - start}
            info[name] = model_info(system.model)
            traces[name] = m.extras["trace"]
            _collect(tables, m, model=name)
        _write_tables(recorder, tables)
        recorder.figure("energy_trajectories", lambda: plots.energy_traces(traces, "Energy along cue trajectories"))
        return _result(job, per_model, info)
