"""Figures (matplotlib, headless): each function returns a Figure with a title, labelled axes and a legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hopbench.solve import EnergyTrace

__all__ = ["capacity_curve", "comparison_bars", "critical_load_curve", "energy_traces", "overlap_histogram",
           "spectra", "training_curve",
           "training_stability"]


def overlap_histogram(overlaps: Mapping[str, np.ndarray], threshold: float, title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
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
    fig, axes = plt.subplots(1, len(traces), figsize=(5 * len(traces), 3.5), squeeze=False)
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


def spectra(eigs: Mapping[str, np.ndarray], title: str, max_points: int = 8) -> Figure:
    """Jacobian eigenvalues in the complex plane at up to ``max_points`` fixed points per model."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in eigs.items():
        values = np.asarray(values)[:max_points].ravel()
        ax.scatter(values.real, values.imag, s=6, alpha=0.5, label=name)
    ax.axvline(0, color="k", lw=1, ls="--", label="Re λ = 0 (stability edge)")
    ax.set(xlabel="Re λ(J)", ylabel="Im λ(J)", title=title)
    ax.legend()
    return fig


def capacity_curve(points: pd.DataFrame, level: float, title: str) -> Figure:
    """Retrieval accuracy against load, one line per model (columns: model, load, retrieval_accuracy)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
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
    fig, ax = plt.subplots(figsize=(6, 3.5))
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


def comparison_bars(frame: pd.DataFrame, metrics: Sequence[str], by: str, title: str) -> Figure:
    """Grouped bars of ``metrics`` (rows of ``frame`` averaged per value of ``by``)."""
    present = [m for m in metrics if m in frame and frame[m].notna().any()]
    means = frame.groupby(by)[present].mean(numeric_only=True)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(present)), 3.8))
    width = 0.8 / max(1, len(means))
    x = np.arange(len(present))
    for i, (name, row) in enumerate(means.iterrows()):
        ax.bar(x + i * width, row.values, width, label=str(name))
    ax.set_xticks(x + width * (len(means) - 1) / 2, present, rotation=30, ha="right")
    ax.set(ylabel="value (mean over runs)", title=title)
    ax.legend(title=by)
    fig.tight_layout()
    return fig


#: columns of a training history that are not loss terms
_NOT_LOSSES = ("step", "time_s", "lr", "grad_norm", "best", "val_accuracy", "val_loss", "val_converged")


def training_curve(history: pd.DataFrame, title: str) -> Figure:
    """``task=train``'s curves against the optimisation step: every loss term and the validation loss (log
    scale), the held-out retrieval accuracy (the kept step marked), and the learning rate."""
    fig, (losses, accuracy, lr) = plt.subplots(1, 3, figsize=(15, 3.8))
    terms = [c for c in history.columns if c not in _NOT_LOSSES and not c.endswith("_fraction")]
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
    fig.tight_layout()
    return fig


def training_stability(history: pd.DataFrame, title: str) -> Figure:
    """Stability fractions at the stored patterns as the weights learn: every ``*_fraction`` column of a
    training history (e.g. ``original_dead_fraction``, ``modified_energy_inconclusive_fraction``) per step."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for column in [c for c in history.columns if c.endswith("_fraction")]:
        rows = history[history[column].notna()]
        ax.plot(rows["step"], rows[column], "o-", ms=3, label=column.replace("_fraction", "").replace("_", " "))
    ax.set(xlabel="step", ylabel="fraction", ylim=(-0.03, 1.03), title=title)
    ax.legend(fontsize=8)
    return fig
