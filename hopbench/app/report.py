"""``hopbench-report DIR...``: every results.json under the given directories in one table, with the mean over seeds.

Writes ``summary.csv`` and ``summary.parquet``: one row per job and model (``row=job``: the config's keys flat,
e.g. ``activation.beta``, the metrics and the status; a ``compare=true`` run gives one row per model) and one
row per configuration (``row=aggregate``: the rows that differ only by seed, with each metric's mean, its
standard error ``<metric>_se`` and count ``<metric>_n``, the runs ``n``, the failed runs ``n_failed`` and the
``seeds``). Figures (``summary_figures/``) come from the keys that vary: each headline metric against one key
with error bars and one line per value of the others, and a phase diagram (heatmap) over two numeric keys. A
figure never averages different configurations, shows its run counts and draws null as missing, not as 0.
The end of every multirun writes the same summary into its sweep folder.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from hopbench.analysis.end_states import ALL_CLASSES
from hopbench.app import plots
from hopbench.app.configs import HopbenchConfig
from hopbench.app.tracking import RUN_SETTINGS, atomic_path, flat_config, save_figure, science

__all__ = ["HEADLINES", "Summary", "aggregate", "collect", "figure_axes", "key_columns", "main", "rows_from_results",
           "summary_text", "warnings_for", "write_summary"]

_MODEL = ["model", "strategy", "energy", "activation", "weights", "n_neurons"]
#: the columns a researcher reads first, per task: each task's table shows its own answer
HEADLINES = {
    "evaluate": [*_MODEL, "system.load", "retrieval_accuracy", "spurious_rate", "n_spurious_attractors",
                 "stable_fraction", "dead_fraction", "energy_inconclusive_fraction", "lyapunov_violation_fraction",
                 "converged_fraction", "theory_backed", "time_s", "status"],
    "train": [*_MODEL, "system.load", "train_loss_final", "train_steps", "train_time_s", "retrieval_accuracy",
              "spurious_rate", "stable_fraction", "dead_fraction", "energy_inconclusive_fraction", "time_s",
              "status"],
    "capacity": ["model", "activation", "weights", "dataset", "n_neurons", "capacity_alpha",
                 "capacity_alpha_interpolated", "capacity_points", "capacity_note", "time_s", "status"],
    "critical_load": ["model", "activation", "weights", "dataset", "n_neurons", "alpha_s", "alpha_s_note", "time_s",
                      "status"],
    "lyapunov": [*_MODEL, "system.load", "lyapunov_violation_fraction", "lyapunov_max_relative_violation",
                 "trajectory_energy_increase_fraction", "theory_backed", "time_s", "status"],
    "reproduce": ["reproduction", "claims_passed", "claims", "passed", "time_s", "status"],
}
FAILED = ["run_dir", "task", "status", "error"]
#: columns that say which run a row is (and its seed), not which configuration
RUN_COLUMNS = ("row", "run_dir", "status", "error", "experiment", "config_hash", "device", "seed")
#: columns besides the config's keys that say what a row measured: the task and, per model of a comparison, the
#: model (``n_patterns`` and ``load`` are the config's, as asked; ``system.*`` what the run built, P = round(αN))
_ROW_KEYS = ("task", "model", "strategy", "energy", "reproduction", "n_neurons", "n_patterns", "load")
#: the config's top-level keys that change what a job computes (a config column is one of these or ``group.param``)
_CONFIG_KEYS = tuple(k for k in HopbenchConfig.__dataclass_fields__ if k not in RUN_SETTINGS and k != "seed")
#: keys that other keys decide (the system's P and α by N and the config; the strategy and energy by the model):
#: a figure leaves such a key off its axes when the other axes decide it
_DERIVED = ("n_patterns", "load", "strategy", "energy")
#: headline columns that are not measurements to plot
_NOT_PLOTTED = {*_ROW_KEYS, "system.load", "activation", "weights", "dataset", "time_s", "status", "theory_backed",
                "claims", "passed", "capacity_points", "train_time_s", "train_steps"}
#: a warning when more than this fraction of a measurement's trajectories did not reach a steady state
UNSETTLED_WARNING = 0.5
#: the end-state classes and trajectory statuses of trajectories that never reached a fixed point
UNSETTLED = ("stall", "stalled", "max_time", "diverged")


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if key == "status_counts" and isinstance(value, dict):
            out.update({f"n_{status}": count for status, count in value.items()})
        elif not isinstance(value, dict | list):
            out[key] = value
    return out


def rows_from_results(results: dict, run_dir: str = "") -> list[dict]:
    """One row per model measured in a run: the run, the model, its metrics, then the config's keys flat."""
    config = results.get("config") or {}
    system = results.get("system") or {}
    chosen = results.get("choices") or {}
    settings = flat_config(science(config), chosen)
    base = {
        "run_dir": run_dir, "status": results.get("status"), "error": results.get("error"),
        "task": results.get("task"), "experiment": config.get("experiment_name"),
        "activation": chosen.get("activation"), "weights": chosen.get("weights"), "dataset": chosen.get("dataset"),
        "n_neurons": system.get("n_neurons", config.get("n_neurons")), "n_patterns": config.get("n_patterns"),
        "load": config.get("load"), "system.n_patterns": system.get("n_patterns"), "system.load": system.get("load"),
        "seed": config.get("seed"), "config_hash": results.get("config_hash"),
        "device": results.get("device"),
    }
    if results.get("task") == "reproduce":  # a published result: its verdicts, not the base network's settings
        which = config.get("task", {}).get("which")
        row = {**{k: base[k] for k in ("run_dir", "status", "error", "task", "experiment", "seed", "config_hash",
                                         "device")},
               "reproduction": which, **_scalars(results.get("metrics", {}))}
        return [{**row, **{k: v for k, v in settings.items() if k.startswith("task.") or k == "full"}}]
    rows = []
    for name, metrics in _per_model(results).items():
        info = results.get("models", {}).get(name, {})
        row = {**base, "model": name, "strategy": info.get("strategy"), "energy": info.get("energy"),
               "theory_backed": info.get("theory_backed"), **_scalars(metrics)}
        rows.append({**row, **{k: v for k, v in settings.items() if k not in row and k != "seed"}})
    return rows


def _per_model(results: dict) -> dict[str, dict]:
    """Metrics of each model of a run (one model unless ``compare=true``)."""
    primary = (results.get("choices") or {}).get("model")
    return results.get("comparison") or {primary: results.get("metrics") or {}}


def warnings_for(results: dict) -> list[str]:
    """What a reader of the headline numbers must know: most trajectories never settled, no answer found."""
    out = []
    for name, metrics in _per_model(results).items():
        for label, classes, statuses in (("cue", "retrieval_end_state_counts", "status_counts"),
                                         ("random-start", "random_end_state_counts", "spurious_status_counts")):
            # the end-state classes where the run has them (the table printed with it: a trajectory that
            # converged to a point Newton cannot polish is a stall there), else the trajectories' statuses
            counts = metrics.get(classes) or metrics.get(statuses) or {}
            total = sum(counts.values())
            off = {k: v for k, v in counts.items() if k in UNSETTLED and v}
            unsettled = sum(off.values())
            if total and unsettled / total > UNSETTLED_WARNING:
                detail = ", ".join(f"{v} {k}" for k, v in off.items())
                hint = ("; a larger solver.t_max lets the max_time ones settle or stall" if counts.get("max_time")
                        else "")
                out.append(f"{name}: {unsettled} of {total} {label} trajectories never reached a steady state "
                           f"({detail}); its metrics describe where they stopped, not attractors{hint}")
        for key, note in (("capacity_alpha", "capacity_note"), ("alpha_s", "alpha_s_note")):
            if key in metrics and metrics[key] is None:
                out.append(f"{name}: no {key} ({metrics.get(note) or 'not found'})")
    return out


def collect(dirs: Iterable[str | Path]) -> pd.DataFrame:
    """All results.json files under ``dirs`` as a DataFrame (unreadable files become failed rows)."""
    rows: list[dict] = []
    for root in dirs:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("results.json"))
        for file in files:
            try:
                results = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                rows.append({"run_dir": str(file.parent), "status": "unreadable", "error": str(err)})
                continue
            rows.extend(rows_from_results(results, str(file.parent)))
    return pd.DataFrame(rows)


def _format(frame: pd.DataFrame) -> str:
    tasks = frame["task"].dropna().unique().tolist() if "task" in frame else []
    wanted = HEADLINES.get(tasks[0], HEADLINES["evaluate"]) if len(tasks) == 1 else sorted(
        {c for t in tasks for c in HEADLINES.get(t, [])}, key=[c for h in HEADLINES.values() for c in h].index)
    columns = [c for c in wanted if c in frame and frame[c].notna().any()]
    view = frame[columns].copy()
    for col in view.select_dtypes("number"):
        view[col] = view[col].map(lambda v: "—" if pd.isna(v) else f"{v:.3g}")
    return view.astype(object).where(view.notna(), "—").to_string(index=False)


def summary_text(results: Sequence[dict], title: str = "") -> str:
    """The headline table of one or more runs (the task's own columns; null shown as —)."""
    frame = pd.DataFrame([row for r in results for row in rows_from_results(r)])
    text = (f"\n== {title}\n" if title else "") + _format(frame)
    ends = _end_states(results)
    if not ends.empty:
        text += ("\n\nend states: count (fraction of the cues / random starts); spurious_rate = spurious / fixed "
                 "points\n" + ends.to_string())
    return text


def _end_states(results: Sequence[dict]) -> pd.DataFrame:
    """The end-state classes side by side: a column per measurement (cues, random starts) and model."""
    columns: dict[str, dict[str, str]] = {}
    for label, prefix in (("cues", "retrieval"), ("random starts", "random")):
        for result in results:
            for model, metrics in _per_model(result).items():
                counts = metrics.get(f"{prefix}_end_state_counts")
                if not counts:
                    continue
                total = sum(counts.values())
                column = {c: f"{counts[c]} ({counts[c] / total:.3g})" if c in counts else "" for c in ALL_CLASSES}
                column["all"] = str(total)
                if prefix == "random":
                    rate = metrics.get("spurious_rate")
                    column["spurious_rate"] = "—" if rate is None else f"{rate:.3g}"
                    column["n_spurious_attractors"] = str(metrics.get("n_spurious_attractors", "—"))
                columns[f"{model}: {label}"] = column
    return pd.DataFrame(columns).fillna("")


def key_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that make a configuration: the task, the model and system size of a row, and the config's keys
    (not the seed, nor where, how or by whom it ran)."""
    return [c for c in frame.columns if c not in RUN_COLUMNS and not c.startswith("system.")
            and (c in _ROW_KEYS or c in _CONFIG_KEYS or "." in c)]


def _is_measure(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (rows equal in every :func:`key_columns`, i.e. differing only by seed): the mean
    of each measurement over the runs that finished ok, its standard error (sample standard deviation / √n; null
    for one value) and count, the runs ``n``, the failed runs ``n_failed`` and the ``seeds``. A null value is left
    out of its mean and count, never read as 0; another column keeps its value where the runs agree."""
    keys = key_columns(frame)
    measures = [c for c in frame.columns if c not in keys and c not in RUN_COLUMNS and _is_measure(frame[c])]
    others = [c for c in frame.columns if c not in keys and c not in RUN_COLUMNS and c not in measures]
    rows = []
    for values, group in frame.groupby(keys, dropna=False, sort=True) if keys else [((), frame)]:
        values = values if isinstance(values, tuple) else (values,)
        good = group[group["status"] == "ok"] if "status" in group else group
        row: dict[str, Any] = {"row": "aggregate", **dict(zip(keys, values, strict=True)), "n": len(good),
                               "n_failed": len(group) - len(good),
                               "seeds": ",".join(str(s) for s in sorted(good["seed"].dropna().unique()))
                               if "seed" in good else ""}
        for column in measures:
            data = good[column].dropna().astype(float)
            row[column] = data.mean() if len(data) else math.nan
            row[f"{column}_se"] = data.std(ddof=1) / math.sqrt(len(data)) if len(data) > 1 else math.nan
            row[f"{column}_n"] = len(data)
        for column in others:
            seen = good[column].dropna().map(json.dumps if good[column].map(type).eq(dict).any() else str).unique()
            row[column] = good[column].dropna().iloc[0] if len(seen) == 1 else None
        rows.append(row)
    return pd.DataFrame(rows)


def figure_axes(points: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The keys that vary among the configurations ``points``, less a derived key (:data:`_DERIVED`) or an
    option's parameter (``activation.beta``) that the other keys decide: P and α when N and the load were swept,
    the strategy when the model was, β when only tanh has one."""
    axes = [k for k in keys if points[k].astype(str).nunique() > 1]
    for key in [k for k in (*_DERIVED, *(a for a in axes if "." in a)) if k in axes]:
        rest = [a for a in axes if a != key]
        if rest and (points.astype({a: str for a in rest}).groupby(rest)[key].nunique(dropna=False) <= 1).all():
            axes.remove(key)
    return axes


def _numeric(points: pd.DataFrame, key: str) -> bool:
    return _is_measure(points[key]) and points[key].notna().all()


def _figures(aggregates: pd.DataFrame, out: Path) -> list[Path]:
    """The sweep's figures per task: each headline measurement against its x key (the numeric key with most values,
    else the first key but the model), one line per combination of the other keys; a phase diagram per measurement
    when two numeric keys vary."""
    made: list[Path] = []
    good = aggregates[aggregates["n"] > 0]
    tasks = good["task"].dropna().unique().tolist() if "task" in good else []
    for task in tasks:
        points = good[good["task"] == task].dropna(axis=1, how="all")
        keys = [k for k in key_columns(points) if k != "task"]
        axes = figure_axes(points, keys)
        if not axes:
            continue
        numeric = sorted((a for a in axes if _numeric(points, a)), key=lambda a: -points[a].nunique())
        x = numeric[0] if numeric else next((a for a in axes if a not in ("model", "strategy", "energy")), axes[0])
        prefix = f"{task}_" if len(tasks) > 1 else ""
        metrics = [m for m in HEADLINES.get(task, HEADLINES["evaluate"])
                   if m in points and m not in _NOT_PLOTTED and _is_measure(points[m])]
        for metric in metrics:
            made.append(save_figure(partial(plots.metric_lines, points, metric, x, [a for a in axes if a != x],
                                            f"{task}: {metric} against {x}"),
                                    out / f"{prefix}{metric}_vs_{x}.png", dpi=120))
            if len(numeric) >= 2:
                y = numeric[1]
                made.append(save_figure(partial(plots.phase_diagram, points, metric, x, y,
                                                [a for a in axes if a not in (x, y)],
                                                f"{task}: {metric} over {x} and {y}"),
                                        out / f"{prefix}{metric}_phase_{x}_{y}.png", dpi=120))
    return made


@dataclass
class Summary:
    """What :func:`write_summary` wrote: the table (job and aggregate rows), its files and the figures."""

    frame: pd.DataFrame
    csv: Path
    parquet: Path
    figures_dir: Path
    figures: list[Path] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> int:
        return int((self.frame["row"] == "job").sum())

    @property
    def aggregates(self) -> int:
        return int((self.frame["row"] == "aggregate").sum())


def _typed_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A column holding values of several Python types (say numbers and text) as text, so parquet can type it."""
    out = frame.copy()
    for column in [c for c in out.columns if out[c].dtype == object]:
        kinds = {type(v) for v in out[column] if v is not None and v == v}
        if len(kinds) > 1 or dict in kinds or list in kinds:
            out[column] = [None if v is None or v != v else (json.dumps(v) if isinstance(v, dict | list) else str(v))
                           for v in out[column]]
    return out


def write_summary(frame: pd.DataFrame, out: Path, *, figures: bool = True) -> Summary:
    """``summary.csv`` and ``summary.parquet`` in ``out`` (the job rows of ``frame``, then the aggregates over
    seeds) and, with ``figures``, the figures in ``out/summary_figures``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    aggregates = aggregate(frame)
    table = _typed_columns(pd.concat([frame.assign(row="job"), aggregates], ignore_index=True))
    table = table[["row", *[c for c in table.columns if c != "row"]]]
    summary = Summary(table, out / "summary.csv", out / "summary.parquet", out / "summary_figures")
    with atomic_path(summary.csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(summary.parquet) as tmp:
        table.to_parquet(tmp, index=False)
    good = aggregates[aggregates["n"] > 0]
    summary.axes = figure_axes(good, key_columns(good)) if len(good) else []
    if figures:
        summary.figures = _figures(aggregates, summary.figures_dir)
    return summary


def _aggregate_text(aggregates: pd.DataFrame) -> str:
    """The configurations with more than one run: varying keys, then each headline as mean ± s.e. (n)."""
    several = aggregates[aggregates["n"] > 1]
    if several.empty:
        return ""
    tasks = several["task"].dropna().unique().tolist() if "task" in several else []
    wanted = HEADLINES.get(tasks[0], HEADLINES["evaluate"]) if len(tasks) == 1 else HEADLINES["evaluate"]
    axes = figure_axes(several, key_columns(several)) if len(several) > 1 else []
    view = several[axes].astype(str).copy() if axes else pd.DataFrame(index=several.index)
    for metric in (m for m in wanted if m in several and m not in _NOT_PLOTTED and _is_measure(several[m])):
        view[metric] = [("—" if pd.isna(mean) else f"{mean:.3g} ± {se:.2g}" if pd.notna(se) else f"{mean:.3g}")
                        + f" ({n:.0f})" for mean, se, n in zip(several[metric], several[f"{metric}_se"],
                                                         several[f"{metric}_n"], strict=True)]
    view["seeds"] = several["seeds"]
    return "mean ± standard error over seeds (runs):\n" + view.to_string(index=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hopbench-report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", help="where to write summary.csv/.parquet and figures (default: the first directory)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    missing = [d for d in args.dirs if not Path(d).exists()]
    if missing:
        print(f"hopbench-report: error: no such directory: {missing[0]}", file=sys.stderr)
        return 2
    frame = collect(args.dirs)
    if frame.empty:
        print(f"hopbench-report: error: no results.json under {', '.join(args.dirs)}", file=sys.stderr)
        return 2
    out = Path(args.out or (args.dirs[0] if Path(args.dirs[0]).is_dir() else Path(args.dirs[0]).parent))
    summary = write_summary(frame, out, figures=not args.no_plots)
    print(_format(frame))
    aggregated = _aggregate_text(summary.frame[summary.frame["row"] == "aggregate"])
    if aggregated:
        print("\n" + aggregated)
    print(f"\n{summary.jobs} rows from {frame['run_dir'].nunique()} runs, {summary.aggregates} configurations "
          f"-> {summary.csv}, {summary.parquet.name}")
    for path in summary.figures:
        print(f"plot: {path}")
    failed = frame[frame["status"] != "ok"].drop_duplicates("run_dir") if "status" in frame else frame.iloc[:0]
    runs = frame["run_dir"].nunique()
    if len(failed):
        print(f"{len(failed)} of {runs} runs did not finish ok:", file=sys.stderr)
        for _, row in failed.iterrows():
            print(f"  {row['status']}: {row['run_dir']}: {row.get('error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
