"""``hopbench-report DIR...``: every results.json under the given directories in one DataFrame.

Writes ``summary.csv`` (one row per run and model; a ``compare=true`` run gives one row per model), prints a
readable table, and draws comparison plots (original vs modified).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hopbench.analysis.end_states import ALL_CLASSES
from hopbench.app import plots
from hopbench.app.tracking import atomic_path, save_figure

__all__ = ["HEADLINES", "collect", "main", "rows_from_results", "summary_text", "warnings_for"]

_MODEL = ["model", "strategy", "energy", "activation", "weights", "n_neurons"]
#: the columns a researcher reads first, per task: each task's table shows its own answer
HEADLINES = {
    "evaluate": [*_MODEL, "load", "retrieval_accuracy", "spurious_rate", "n_spurious_attractors", "stable_fraction",
                 "dead_fraction",
                 "energy_inconclusive_fraction", "lyapunov_violation_fraction", "converged_fraction",
                 "theory_backed", "time_s", "status"],
    "train": [*_MODEL, "load", "train_loss_final", "train_steps", "train_time_s", "retrieval_accuracy",
              "spurious_rate", "stable_fraction", "dead_fraction", "energy_inconclusive_fraction", "time_s",
              "status"],
    "capacity": ["model", "activation", "weights", "dataset", "n_neurons", "capacity_alpha",
                 "capacity_alpha_interpolated", "capacity_points", "capacity_note", "time_s", "status"],
    "critical_load": ["model", "activation", "weights", "dataset", "n_neurons", "alpha_s", "alpha_s_note", "time_s",
                      "status"],
    "lyapunov": [*_MODEL, "load", "lyapunov_violation_fraction", "lyapunov_max_relative_violation",
                 "trajectory_energy_increase_fraction", "theory_backed", "time_s", "status"],
    "reproduce": ["reproduction", "claims_passed", "claims", "passed", "time_s", "status"],
}
FAILED = ["run_dir", "task", "status", "error"]
BAR_METRICS = ["retrieval_accuracy", "nearest_accuracy", "spurious_rate", "random_trivial_fraction",
               "random_stall_fraction", "stable_fraction",
               "energy_certified_fraction", "energy_inconclusive_fraction", "energy_jacobian_agreement",
               "dead_fraction", "lyapunov_violation_fraction", "trajectory_energy_increase_fraction"]
#: a warning when more than this fraction of a measurement's trajectories did not reach a steady state
UNSETTLED_WARNING = 0.5


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if key == "status_counts" and isinstance(value, dict):
            out.update({f"n_{status}": count for status, count in value.items()})
        elif not isinstance(value, dict | list):
            out[key] = value
    return out


def rows_from_results(results: dict, run_dir: str = "") -> list[dict]:
    """One row per model measured in a run."""
    config = results.get("config", {})
    system = results.get("system", {})
    chosen = results.get("choices", {})
    base = {
        "run_dir": run_dir, "status": results.get("status"), "error": results.get("error"),
        "task": results.get("task"), "activation": chosen.get("activation"), "weights": chosen.get("weights"),
        "dataset": chosen.get("dataset"), "n_neurons": system.get("n_neurons", config.get("n_neurons")),
        "n_patterns": system.get("n_patterns"), "load": system.get("load"), "seed": config.get("seed"),
        "config_hash": results.get("config_hash"), "device": results.get("device"),
    }
    if results.get("task") == "reproduce":  # a published result: its verdicts, not the base network's settings
        which = config.get("task", {}).get("which")
        return [{**{k: base[k] for k in ("run_dir", "status", "error", "task", "seed", "config_hash", "device")},
                 "reproduction": which, **_scalars(results.get("metrics", {}))}]
    rows = []
    for name, metrics in _per_model(results).items():
        info = results.get("models", {}).get(name, {})
        rows.append({**base, "model": name, "strategy": info.get("strategy"), "energy": info.get("energy"),
                     "theory_backed": info.get("theory_backed"), **_scalars(metrics)})
    return rows


def _per_model(results: dict) -> dict[str, dict]:
    """Metrics of each model of a run (one model unless ``compare=true``)."""
    primary = (results.get("choices") or {}).get("model")
    return results.get("comparison") or {primary: results.get("metrics") or {}}


def warnings_for(results: dict) -> list[str]:
    """What a reader of the headline numbers must know: most trajectories never settled, no answer found."""
    out = []
    for name, metrics in _per_model(results).items():
        for label, key in (("cue", "status_counts"), ("random-start", "spurious_status_counts")):
            counts = metrics.get(key) or {}
            total = sum(counts.values())
            unsettled = total - counts.get("converged", 0)
            if total and unsettled / total > UNSETTLED_WARNING:
                detail = ", ".join(f"{v} {k}" for k, v in counts.items() if k != "converged" and v)
                out.append(f"{name}: {unsettled} of {total} {label} trajectories never reached a steady state "
                           f"({detail}); its metrics describe where they stopped, not attractors")
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


def _plots(frame: pd.DataFrame, out: Path) -> list[Path]:

    made = []
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    if ok.empty or "model" not in ok:
        return made
    figures = {"comparison_by_model": lambda: plots.comparison_bars(ok, BAR_METRICS, "model",
                                                                    "original vs modified (mean over runs)")}
    if "activation" in ok and ok["activation"].nunique() > 1:
        ok = ok.assign(model_activation=ok["model"] + " / " + ok["activation"].astype(str))
        figures["comparison_by_model_activation"] = lambda: plots.comparison_bars(
            ok, BAR_METRICS, "model_activation", "by model and activation")
    if "load" in ok and ok["load"].nunique() > 1 and "retrieval_accuracy" in ok:
        curve = ok.dropna(subset=["retrieval_accuracy"]).groupby(["model", "load"], as_index=False)[
            "retrieval_accuracy"].mean()
        figures["retrieval_vs_load"] = lambda: plots.capacity_curve(curve, 0.9, "retrieval accuracy vs load")
    return [save_figure(draw, out / f"{name}.png", dpi=120) for name, draw in figures.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hopbench-report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    parser.add_argument("--out", help="where to write summary.csv and plots (default: the first directory)")
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
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "summary.csv") as tmp:
        frame.to_csv(tmp, index=False)
    print(_format(frame))
    print(f"\n{len(frame)} rows from {frame['run_dir'].nunique()} runs -> {out / 'summary.csv'}")
    if not args.no_plots:
        for path in _plots(frame, out):
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
