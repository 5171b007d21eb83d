"""Tasks (config group ``task``): evaluate, train, capacity, critical_load, lyapunov, reproduce.

A task takes validated :class:`~hopbench.app.settings.Settings` and a :class:`~hopbench.app.tracking.Recorder`, runs
its measurements for every model of the run (original and modified side by side with ``compare=true``, on
the same weights, patterns and cues), records tables and figures, and returns the results' content.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from hopbench.analysis.metrics import Measurement, lyapunov_check, retrieval, spurious, stability_at_patterns
from hopbench.analysis.training import TrainConfig, train
from hopbench.app import plots
from hopbench.app.settings import Settings
from hopbench.app.tracking import Recorder
from hopbench.core.models import Model
from hopbench.core.system import System, compose
from hopbench.registry import Registry

__all__ = ["TASKS", "alpha_crossing", "model_info"]

TaskFn = Callable[[Settings, Recorder], dict]
TASKS: Registry[dict] = Registry("task")


def _progress(items: Iterable, desc: str) -> Iterable:
    return tqdm(list(items), desc=desc, leave=False, disable=None)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _system(settings: Settings, name: str, **overrides: Any) -> System:
    return compose(model=name, **{**settings.system, **overrides}, **settings.model_kwargs(name))


def _systems(settings: Settings, **overrides: Any) -> dict[str, System]:
    """One system per model, sharing patterns and weights."""
    return _with_partners(settings, _system(settings, settings.models()[0], **overrides))


def _with_partners(settings: Settings, base: System) -> dict[str, System]:
    """``base`` and, for every other model of the run, the same patterns and weights under that model."""
    return {name: base if name == base.model.name else base.with_model(name, **settings.model_kwargs(name))
            for name in settings.models()}


def model_info(model: Model) -> dict:
    return {"model": model.name, "strategy": model.strategy.name, "energy": model.energy.name,
            "state": model.state, **model.backing.as_dict()}


def _collect(tables: dict[str, list[pd.DataFrame]], name: str, measurement: Measurement, **columns: Any) -> None:
    for key, frame in measurement.tables.items():
        frame = frame.copy()
        for i, (col, value) in enumerate(columns.items()):
            frame.insert(i, col, value)
        tables[key].append(frame)


def _write_tables(recorder: Recorder, tables: dict[str, list[pd.DataFrame]]) -> None:
    for key, frames in tables.items():
        recorder.table(key, pd.concat(frames, ignore_index=True))


def _result(settings: Settings, per_model: dict[str, dict], info: dict[str, dict], **extra: Any) -> dict:
    primary = info[settings.model]
    return {"metrics": per_model[settings.model], "comparison": per_model if settings.compare else None,
            "models": info, "theory_backed": primary["theory_backed"], "theory_reasons": primary["theory_reasons"],
            **extra}


@TASKS.register("evaluate")
def evaluate(settings: Settings, recorder: Recorder) -> dict:
    """Retrieval, spurious memories, stability at the stored patterns and the Lyapunov check (§5)."""
    return _evaluate(settings, recorder, _systems(settings))


@TASKS.register("train")
def train_task(settings: Settings, recorder: Recorder) -> dict:
    """Learn W and b from the configured storage rule (§7), save them, then evaluate everything of §5.

    Every validation also measures stability at the stored patterns for each model of the run (with
    ``task.stability``): how the dead fraction and the energy verdicts change as the weights learn."""
    cfg = TrainConfig.from_params(settings.task_params)
    base = _system(settings, settings.model)

    def probe(system: System) -> dict:
        out = {}
        for name, partner in _with_partners(settings, system).items():
            m = stability_at_patterns(partner, partner.model, settings.solver, settings.stability,
                                      max_points=settings.max_points, threshold=settings.retrieval["threshold"])
            out.update({f"{name}_{k}": m.scalars[k] for k in ("stable_fraction", "dead_fraction",
                                                               "energy_inconclusive_fraction")})
        return out

    result = train(base, cfg, model_kwargs=settings.model_kwargs(settings.model), cue=settings.cue,
                   solver=settings.solver, threshold=settings.retrieval["threshold"],
                   probe=probe if settings.task_params["stability"] else None, on_log=recorder.log)
    trained = result.system
    weights = recorder.arrays("trained_weights", W=trained.net.W.cpu().numpy(), b=trained.net.b.cpu().numpy())
    summary = {"train_loss_initial": result.history[0]["loss"], "train_loss_final": result.history[-1]["loss"],
               "train_steps": result.steps_run, "train_stop_reason": result.stop_reason,
               "train_best_step": result.best_step, "val_accuracy_initial": result.history[0]["val_accuracy"],
               "val_accuracy_best": result.best["val_accuracy"], "train_time_s": result.seconds}
    recorder.artifact("trained_weights", weights, metadata={"objective": cfg.objective, **summary})
    history = pd.DataFrame(result.history)
    recorder.table("training", history)
    label = f"{settings.model}, {settings.system['activation']}, {settings.system['weights']} start"
    recorder.figure("training_loss", lambda: plots.training_curve(
        history, f"task=train, objective={cfg.objective} ({label}): stopped by {result.stop_reason}, "
                 f"kept step {result.best_step}"))
    if settings.task_params["stability"]:
        recorder.figure("training_dead_neurons", lambda: plots.training_stability(
            history, f"Stored fixed points as the weights learn ({label})"))
    out = _evaluate(settings, recorder, _with_partners(settings, trained))
    out["metrics"].update(summary)
    return out


def _evaluate(settings: Settings, recorder: Recorder, systems: dict[str, System]) -> dict:
    parts = settings.task_params
    per_model: dict[str, dict] = {}
    info: dict[str, dict] = {}
    tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
    overlaps, traces, spectra = {}, {}, {}
    for name, system in _progress(systems.items(), "models"):
        model, metrics, timing = system.model, {}, {}
        record = parts["lyapunov"] and settings.lyapunov["record_trajectories"]
        rec_traj = None
        start = _clock(system.device)
        if parts["retrieval"]:
            m = retrieval(system, model, settings.cue, settings.solver, n_cues=settings.retrieval["n_cues"],
                          threshold=settings.retrieval["threshold"], record_energy=record)
            metrics.update(m.scalars)
            _collect(tables, name, m, model=name)
            overlaps[name] = m.extras["overlap"].numpy()
            rec_traj = m.extras["trajectories"]
            timing["retrieval_s"] = _clock(system.device) - start
        if parts["spurious"]:
            t0 = _clock(system.device)
            m = spurious(system, model, settings.solver, n_states=settings.spurious["n_states"],
                         threshold=settings.retrieval["threshold"],
                         cluster_threshold=settings.spurious["cluster_threshold"])
            metrics.update(m.scalars)
            _collect(tables, name, m, model=name)
            timing["spurious_s"] = _clock(system.device) - t0
        if parts["stability"]:
            t0 = _clock(system.device)
            m = stability_at_patterns(system, model, settings.solver, settings.stability,
                                      max_points=settings.max_points, threshold=settings.retrieval["threshold"],
                                      keep_spectra=True)
            metrics.update(m.scalars)
            metrics["jacobian_route"] = m.extras["route"]
            _collect(tables, name, m, model=name)
            spectra[name] = m.extras["spectra"].numpy()
            timing["stability_s"] = _clock(system.device) - t0
        if parts["lyapunov"]:
            t0 = _clock(system.device)
            m = lyapunov_check(system, model, settings.cue, settings.solver, n_states=settings.lyapunov["n_states"],
                               tol=settings.lyapunov["tol"], trace_rtol=settings.lyapunov["trajectory_rtol"],
                               trajectories=rec_traj)
            metrics.update(m.scalars)
            _collect(tables, name, m, model=name)
            traces[name] = m.extras["trace"]
            timing["lyapunov_s"] = _clock(system.device) - t0
        metrics["time_s"] = _clock(system.device) - start
        metrics["timing"] = timing
        per_model[name] = metrics
        info[name] = model_info(model)
    _write_tables(recorder, tables)
    label = f"{settings.system['weights']} / {settings.system['activation']}, N={settings.n_neurons}"
    if overlaps:
        recorder.figure("retrieval_overlaps", lambda: plots.overlap_histogram(
            overlaps, settings.retrieval["threshold"], f"Retrieval ({label})"))
    if traces:
        recorder.figure("energy_trajectories", lambda: plots.energy_traces(traces, f"Energy along cue trajectories "
                                                                                   f"({label})"))
    if spectra:
        recorder.figure("jacobian_spectra", lambda: plots.spectra(spectra, f"Jacobian spectra at stored patterns "
                                                                           f"({label})"))
    return _result(settings, per_model, info)


def _capacity_for(settings: Settings, name: str) -> tuple[dict, list[dict], dict]:
    """Bisection on P for accuracy ≥ level; every evaluated point is kept."""
    N = settings.n_neurons
    p = settings.task_params
    level, lo, hi = p["level"], p["p_min"], p["p_max"] or N
    points: dict[int, dict] = {}
    info: dict = {}

    def accuracy(P: int) -> float:
        if P not in points:
            system = _system(settings, name, n_patterns=P)
            info.update(model_info(system.model))
            m = retrieval(system, system.model, settings.cue, settings.solver, n_cues=settings.retrieval["n_cues"],
                          threshold=settings.retrieval["threshold"])
            points[P] = {"model": name, "n_patterns": P, "load": P / N,
                         **{k: m.scalars[k] for k in ("retrieval_accuracy", "nearest_accuracy", "mean_overlap",
                                                      "converged_fraction")}}
        return points[P]["retrieval_accuracy"]

    bar = tqdm(desc=f"capacity {name}", leave=False, disable=None)
    note = None
    if accuracy(lo) < level:
        alpha, interp, note = None, None, f"accuracy < {level} already at P = {lo}"
    elif accuracy(hi) >= level:
        alpha, interp, note = hi / N, None, f"lower bound: accuracy ≥ {level} up to P = {hi}"
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if accuracy(mid) >= level else (lo, mid)
            bar.update()
        a_lo, a_hi = points[lo]["retrieval_accuracy"], points[hi]["retrieval_accuracy"]
        alpha = lo / N
        interp = (lo + (a_lo - level) / (a_lo - a_hi) * (hi - lo)) / N
    bar.close()
    metrics = {"capacity_alpha": alpha, "capacity_alpha_interpolated": interp, "capacity_note": note,
               "capacity_points": len(points)}
    return metrics, sorted(points.values(), key=lambda r: r["n_patterns"]), info


@TASKS.register("capacity")
def capacity(settings: Settings, recorder: Recorder) -> dict:
    """The largest load α_c with retrieval accuracy ≥ level, by bisection on P (§5.2)."""
    per_model, info, rows = {}, {}, []
    for name in settings.models():
        start = time.perf_counter()
        metrics, points, model = _capacity_for(settings, name)
        metrics["time_s"] = time.perf_counter() - start
        per_model[name], info[name] = metrics, model
        rows.extend(points)
    frame = pd.DataFrame(rows)
    recorder.table("capacity_points", frame)
    recorder.figure("capacity", lambda: plots.capacity_curve(
        frame, settings.task_params["level"], f"Retrieval vs load ({settings.system['weights']}, "
                                              f"{settings.system['activation']}, N={settings.n_neurons})"))
    return _result(settings, per_model, info)


def alpha_crossing(loads: list[float], values: list[float], level: float) -> tuple[float | None, str | None]:
    """The load where ``values`` first falls below ``level``, linearly interpolated (None with a note when
    it is below the first or above the last load)."""
    pairs = sorted(zip(loads, values, strict=True))
    for i, (alpha, value) in enumerate(pairs):
        if value < level:
            if i == 0:
                return None, f"below the first load {alpha:g}"
            a0, v0 = pairs[i - 1]
            return a0 + (v0 - level) / (v0 - value) * (alpha - a0), None
    return None, f"above the last load {pairs[-1][0]:g}"


@TASKS.register("critical_load")
def critical_load(settings: Settings, recorder: Recorder) -> dict:
    """Stable fraction of the stored fixed points across loads, and α_S where it falls through level (§5.5)."""
    p = settings.task_params
    loads = [float(a) for a in p["loads"]]
    spectrum_load = p.get("spectrum_load") or loads[len(loads) // 2]
    per_model, info, rows = {}, {}, []
    tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
    spectra: dict[str, Any] = {}
    alpha_s: dict[str, float | None] = {}
    for name in settings.models():
        start = time.perf_counter()
        for alpha in _progress(loads, f"loads {name}"):
            system = _system(settings, name, n_patterns=None, load=alpha)
            info[name] = model_info(system.model)
            m = stability_at_patterns(system, system.model, settings.solver, settings.stability,
                                      max_points=settings.max_points, threshold=settings.retrieval["threshold"],
                                      follow_dynamics=p["integrate"], keep_spectra=abs(alpha - spectrum_load) < 1e-12)
            table = m.tables["stability"]
            rows.append({"model": name, "load": alpha, "n_patterns": system.data.n_patterns,
                         **{k: v for k, v in m.scalars.items() if not isinstance(v, dict)},
                         "bulk_edge_mean": float(table["bulk_edge"].mean()),
                         **{f"{c}_mean": float(table[c].mean()) for c in table if c.startswith("outlier_") and
                            c.endswith("_real")}})
            _collect(tables, name, m, model=name, load=alpha)
            if "spectra" in m.extras:
                spectra[f"{name} (α={alpha:g})"] = m.extras["spectra"].numpy()
        mine = [r for r in rows if r["model"] == name]
        a_s, note = alpha_crossing([r["load"] for r in mine], [r["stable_fraction"] for r in mine], p["level"])
        alpha_s[name] = a_s
        per_model[name] = {"alpha_s": a_s, "alpha_s_note": note,
                           "stable_fraction_by_load": {f"{r['load']:g}": r["stable_fraction"] for r in mine},
                           "stored_fraction_by_load": {f"{r['load']:g}": r["stored_fraction"] for r in mine},
                           "time_s": time.perf_counter() - start}
    frame = pd.DataFrame(rows)
    recorder.table("critical_load", frame)
    _write_tables(recorder, tables)
    label = f"{settings.system['activation']}, {settings.system['dataset']}, N={settings.n_neurons}"
    recorder.figure("critical_load", lambda: plots.critical_load_curve(
        frame, p["level"], f"Stability of stored fixed points ({label})", alpha_s))
    if spectra:
        recorder.figure("jacobian_spectrum", lambda: plots.spectra(spectra, f"Jacobian spectrum at α = "
                                                                            f"{spectrum_load:g} ({label})"))
    return _result(settings, per_model, info)


@TASKS.register("lyapunov")
def lyapunov(settings: Settings, recorder: Recorder) -> dict:
    """The Lyapunov check of §5.6 alone."""
    per_model, info, traces = {}, {}, {}
    tables: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for name, system in _systems(settings).items():
        start = time.perf_counter()
        m = lyapunov_check(system, system.model, settings.cue, settings.solver, n_states=settings.lyapunov["n_states"],
                           tol=settings.lyapunov["tol"], trace_rtol=settings.lyapunov["trajectory_rtol"])
        per_model[name] = {**m.scalars, "time_s": time.perf_counter() - start}
        info[name] = model_info(system.model)
        traces[name] = m.extras["trace"]
        _collect(tables, name, m, model=name)
    _write_tables(recorder, tables)
    recorder.figure("energy_trajectories", lambda: plots.energy_traces(traces, "Energy along cue trajectories"))
    return _result(settings, per_model, info)


@TASKS.register("reproduce")
def reproduce(settings: Settings, recorder: Recorder) -> dict:
    """A published result: data, figure and verdict.json in ``reproductions/<which>/``."""
    from pathlib import Path

    from hopbench.core.system import resolve_device
    from hopbench.repro import Context
    from hopbench.repro import reproduce as run_reproduction

    p = settings.task_params
    which, full = p["which"], p["use"] == "full_params"
    ctx = Context(which, Path(p["out"]) / which, resolve_device(settings.system["device"]), seed=settings.seed,
                  figures=p["figures"], recorder=recorder)
    document = run_reproduction(which, dict(p[p["use"]]), ctx, full=full)
    metrics = {"passed": document["passed"], "claims_passed": sum(c["passed"] for c in document["claims"]),
               "claims": len(document["claims"]), "time_s": document["time_s"]}
    print(f"\n== reproduction {which}: {metrics['claims_passed']} of {metrics['claims']} claims pass "
          f"-> {ctx.out_dir / 'verdict.json'}")
    for claim in document["claims"]:
        print(f"  [{'pass' if claim['passed'] else 'FAIL'}] {claim['claim']}: {claim['measured']} "
              f"(tolerance: {claim['tolerance']})")
    return {"metrics": metrics, "comparison": None, "models": {}, "theory_backed": None, "theory_reasons": [],
            "reproduction": document}
