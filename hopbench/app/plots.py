"""Figures: each function returns a matplotlib Figure with a title, labelled axes and a legend.

Figures are made object-oriented (``matplotlib.figure.Figure``), never through pyplot: no global backend is
chosen at import, nothing is registered with pyplot (a notebook's inline figures are left alone) and no
display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hopbench.analysis.training import BOOKKEEPING
from hopbench.solve import EnergyTrace

__all__ = ["SPECTRA_POINTS", "capacity_curve", "critical_load_curve", "energy_traces", "metric_lines",
           "overlap_histogram", "phase_diagram", "spectra", "training_curve", "training_stability"]


def overlap_histogram(overlaps: Mapping[str, np.ndarray], threshold: float, title: str) -> Figure:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    bins = np.linspace(-1, 1, 41)
    for name, values in overlaps.items():
        values = np.asarray(values, dtype=float)
        ax.hist(values[np.isfinite(values)], bins=bins, alpha=0.6, label=name)
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set(xlabel="cosine(final activity, target)", ylabel="cues", title=title)
    ax.legend()
    return fig


def energy_traces(traces: Mapping[str, EnergyTrace], title: str, n: int = 8) -> Figure:
    """Energy against time along the first ``n`` trajectories of each model (one panel per model)."""
    fig = Figure(figsize=(5 * len(traces), 3.5))
    axes = fig.subplots(1, len(traces), squeeze=False)
    for ax, (name, trace) in zip(axes[0], traces.items(), strict=True):
        idx, t, e = (v.detach().double().cpu().numpy() for v in (trace.index, trace.t, trace.energy))
        for i in range(min(n, trace.n)):
            sel = idx == i
            order = np.argsort(t[sel], kind="stable")
            ax.plot(t[sel][order], e[sel][order], lw=1)
        ax.set(xlabel="time", ylabel="energy", title=f"{name}: energy along {min(n, trace.n)} trajectories")
        ax.set_xscale("symlog", linthresh=1.0)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: fixed points whose Jacobian spectra the spectra figure shows
SPECTRA_POINTS = 8


def spectra(eigs: Mapping[str, np.ndarray], title: str, max_points: int = SPECTRA_POINTS) -> Figure:
    """Jacobian eigenvalues in the complex plane at up to ``max_points`` fixed points per model."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, values in eigs.items():
        values = np.asarray(values)[:max_points].ravel()
        ax.scatter(values.real, values.imag, s=6, alpha=0.5, label=name)
    ax.axvline(0, color="k", lw=1, ls="--", label="Re λ = 0 (stability edge)")
    ax.set(xlabel="Re λ(J)", ylabel="Im λ(J)", title=title)
    ax.legend()
    return fig


def capacity_curve(points: pd.DataFrame, level: float, title: str) -> Figure:
    """Retrieval accuracy against load, one line per model (columns: model, load, retrieval_accuracy)."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for name, group in points.groupby("model"):
        group = group.sort_values("load")
        ax.plot(group["load"], group["retrieval_accuracy"], "o-", label=str(name))
    ax.axhline(level, color="k", ls="--", lw=1, label=f"level {level:g}")
    ax.set(xlabel="load α = P/N", ylabel="retrieval accuracy", ylim=(-0.02, 1.02), title=title)
    ax.legend()
    return fig


def critical_load_curve(points: pd.DataFrame, level: float, title: str,
                        alpha_s: Mapping[str, float | None] | None = None) -> Figure:
    """Stable and stored fractions against load (columns: model, load, stable_fraction, stored_fraction)."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for name, group in points.groupby("model"):
        group = group.sort_values("load")
        line, = ax.plot(group["load"], group["stable_fraction"], "o-", label=f"{name}: stable")
        ax.plot(group["load"], group["stored_fraction"], "s:", color=line.get_color(), label=f"{name}: stored")
        a_s = (alpha_s or {}).get(str(name))
        if a_s is not None:
            ax.axvline(a_s, color=line.get_color(), lw=1, ls="--", label=f"{name}: α_S = {a_s:.3f}")
    ax.axhline(level, color="k", ls="--", lw=1, label=f"level {level:g}")
    ax.set(xlabel="load α = P/N", ylabel="fraction of stored fixed points", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=8)
    return fig


def _label(keys: Sequence[str], values: Sequence[object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all"


def _counts(n: pd.Series) -> str:
    low, high = int(n.min()), int(n.max())
    return f"n={low}" if low == high else f"n={low}–{high}"


def _count(points: pd.DataFrame, metric: str) -> str | None:
    """The column counting the values behind each point's mean: ``<metric>_n``, else the runs ``n``."""
    return next((c for c in (f"{metric}_n", "n") if c in points), None)


def _check_one_per_point(points: pd.DataFrame, keys: Sequence[str], metric: str) -> None:
    if points.duplicated(subset=list(keys)).any():
        raise ValueError(f"{metric}: several configurations share a point of ({', '.join(keys)}); a figure never "
                         "averages different configurations — give every varying key an axis")


def metric_lines(points: pd.DataFrame, metric: str, x: str, lines: Sequence[str], title: str) -> Figure:
    """``metric`` against ``x``: the mean over seeds with standard-error bars, one line per combination of the
    ``lines`` keys. ``points`` has one row per configuration (columns ``x``, ``lines``, ``metric``, ``metric_se``,
    and ``metric_n`` or ``n``: the values behind each mean, shown in the legend); a null mean is a gap in its
    line, never a zero. A categorical ``x`` is spread over evenly spaced positions, each line's points side by
    side and not joined."""
    lines = list(lines)
    _check_one_per_point(points, [x, *lines], metric)
    numeric = pd.api.types.is_numeric_dtype(points[x]) and not pd.api.types.is_bool_dtype(points[x])
    categories = sorted(points[x].astype(str).unique()) if not numeric else []
    groups = list(points.groupby(lines, dropna=False, sort=True)) if lines else [((), points)]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    width = 0.3 / max(1, len(groups))
    for i, (values, group) in enumerate(groups):
        values = values if isinstance(values, tuple) else (values,)
        group = group.sort_values(x, key=None if numeric else lambda c: c.astype(str))
        mean = group[metric].astype(float).to_numpy()
        se = group[f"{metric}_se"].astype(float).to_numpy() if f"{metric}_se" in group else np.full(len(group), np.nan)
        if numeric:
            where = group[x].astype(float).to_numpy()
        else:
            where = np.array([categories.index(v) for v in group[x].astype(str)]) + (i - (len(groups) - 1) / 2) * width
        count = _count(group, metric)
        label = f"{_label(lines, values)} ({_counts(group[count])})" if count else _label(lines, values)
        line, = ax.plot(where, mean, "o-" if numeric else "o", label=label)  # categories: points, not lines
        bars = np.isfinite(mean) & np.isfinite(se)  # one seed: no spread to show
        ax.errorbar(where[bars], mean[bars], yerr=se[bars], fmt="none", capsize=3, color=line.get_color())
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set(xlabel=x, ylabel=f"{metric} (mean ± s.e. over seeds)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def phase_diagram(points: pd.DataFrame, metric: str, x: str, y: str, panels: Sequence[str], title: str,
                  max_panels: int = 12) -> Figure:
    """``metric`` over two numeric keys ``x`` and ``y`` as a heatmap (a phase diagram), one panel per combination
    of the ``panels`` keys (at most ``max_panels``): each cell is one configuration's mean over seeds, annotated
    with its value and the count of values behind it; a null or missing cell is grey and marked ``null``, never a
    zero."""
    panels = list(panels)
    _check_one_per_point(points, [x, y, *panels], metric)
    groups = list(points.groupby(panels, dropna=False, sort=True)) if panels else [((), points)]
    if len(groups) > max_panels:
        title = f"{title} (the first {max_panels} of {len(groups)} panels)"
        groups = groups[:max_panels]
    xs, ys = sorted(points[x].dropna().unique()), sorted(points[y].dropna().unique())
    values = points[metric].astype(float)
    low, high = (float(values.min()), float(values.max())) if values.notna().any() else (0.0, 1.0)
    cols = min(len(groups), 4)
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(0.9 * len(xs) * cols + 2, 0.7 * len(ys) * rows + 1.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    count = _count(points, metric)
    image = None
    for ax, (key, group) in zip(axes.flat, groups, strict=False):
        key = key if isinstance(key, tuple) else (key,)
        grid = np.full((len(ys), len(xs)), np.nan)
        counts = np.zeros((len(ys), len(xs)), dtype=int)
        for _, row in group.iterrows():
            i, j = ys.index(row[y]), xs.index(row[x])
            grid[i, j] = row[metric]
            counts[i, j] = int(row[count]) if count else 1
        image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, vmin=low, vmax=high)
        for i in range(len(ys)):
            for j in range(len(xs)):
                text = "null" if not np.isfinite(grid[i, j]) else f"{grid[i, j]:.2g}\nn={counts[i, j]}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if np.isfinite(grid[i, j]) and grid[i, j] < (low + high) / 2 else "black")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
        ax.set(xlabel=x, ylabel=y, title=_label(panels, key) if panels else "")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes, label=f"{metric} (mean over seeds)")
    fig.suptitle(title)
    return fig


def training_curve(history: pd.DataFrame, title: str) -> Figure:
    """``task=train``'s curves against the optimisation step: every loss term and the validation loss (log
    scale), the held-out retrieval accuracy (the kept step marked), and the learning rate."""
    fig = Figure(figsize=(15, 3.8), layout="tight")
    losses, accuracy, lr = fig.subplots(1, 3)
    terms = [c for c in history.columns if c not in BOOKKEEPING and not c.endswith("_fraction")]
    for column in [*terms, *(["val_loss"] if "val_loss" in history else [])]:
        rows = history[history[column].notna()]
        values = rows[column].to_numpy(dtype=float)
        losses.plot(rows["step"], np.where(values > 0, values, np.nan), "o-" if column == "val_loss" else "-",
                    ms=3, label=column)
    losses.set(xlabel="step", ylabel="loss", yscale="log", title="losses")
    losses.legend(fontsize=8)
    if "val_accuracy" in history:
        rows = history[history["val_accuracy"].notna()]
        accuracy.plot(rows["step"], rows["val_accuracy"], "o-", ms=3, label="held-out retrieval accuracy")
        kept = rows[rows["best"].astype(bool)].tail(1)
        accuracy.plot(kept["step"], kept["val_accuracy"], "D", color="k", ms=8, label="kept weights")
        accuracy.legend(fontsize=8)
    accuracy.set(xlabel="step", ylabel="accuracy", ylim=(-0.03, 1.03), title="validation (held-out cues)")
    if "lr" in history:
        lr.plot(history["step"], history["lr"])
    lr.set(xlabel="step", ylabel="learning rate", yscale="log", title="learning rate")
    fig.suptitle(title)
    return fig


def training_stability(history: pd.DataFrame, title: str) -> Figure:
    """Stability fractions at the stored patterns as the weights learn: every ``*_fraction`` column of a
    training history (e.g. ``original_dead_fraction``, ``modified_energy_inconclusive_fraction``) per step."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for column in [c for c in history.columns if c.endswith("_fraction")]:
        rows = history[history[column].notna()]
        ax.plot(rows["step"], rows[column], "o-", ms=3, label=column.replace("_fraction", "").replace("_", " "))
    ax.set(xlabel="step", ylabel="fraction", ylim=(-0.03, 1.03), title=title)
    ax.legend(fontsize=8)
    return fig
