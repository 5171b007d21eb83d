"""Critical load of graded fixed points (docs/design.md §6; Cohen & Lengyel 2025, abstract only).

System (§6): log-normal patterns x^μ (mean 1, coefficient of variation CV), activation ``power``
φ(h) = (σ·softplus((h − θ)/σ))ⁿ, fields H = φ⁻¹(X), weights W = H X⁺ (graded pseudo-inverse rule, no ridge),
dynamics ẋ = −x + φ(Wx) (``modified`` model, ``identity`` strategy, b = 0). Every stored pattern is an exact
fixed point (the residual ‖−x + φ(Wx)‖∞ is recorded, ~1e-13), so its stability is read off the Jacobian
J = −I + diag(φ'(h)) W at the pattern itself, with no integration. A pattern is *stable* when
max Re λ(J) < −tol·max(1, max|λ(J)|) — the verdict rule of ``hopbench.analysis.stability.analyse``.

Spectrum. W = H X⁺ has rank P, so J has N − P eigenvalues exactly −1 (the kernel of W) and P non-trivial
ones, the eigenvalues of the P × P matrix −I + X⁺ diag(φ'(h)) H (the non-zero eigenvalues of AB and BA
coincide; H = W X is taken from the network's own W). The bulk/outlier split (``split_spectrum``: the k
eigenvalues farthest from the median real part are the outliers, the bulk edge is the largest real part of
the rest) is applied to these P eigenvalues: on the full spectrum the −1 cluster holds the median once
P < N/2 and the "outliers" become the −1 eigenvalues as soon as P > N/2. The verdict uses the engine's full
Jacobian spectrum (``jacobian_eigenvalues``) on ``full_jacobian_points`` patterns per load (all by default)
and the exact reduced spectrum elsewhere; where both exist they are compared (``spectrum_check`` ≈ 1e-14).
``analyse`` itself is not called: it also builds the energy Hessian, which §6 does not need and which
dominates its cost for the ``power`` activation.

Parameters (chosen before any run): the 18 configurations CV ∈ {0.5, 1, 2} × n ∈ {1, 1.5, 2} × θ ∈ {0, −0.5}
of §6 with σ = 0.1 (a smooth threshold, 10 % of the mean activity); loads 0.05…0.95 in steps of 0.05; N = 100
at the default size (19 loads × 18 configurations × all P patterns: about 17 000 Jacobians of size 100 in a
minute or two on 2 CPU cores; N = 200 would cost 16×), seed 3 (§6). α_S = the load where the stable fraction
(averaged over seeds) falls through 0.5, linearly interpolated (``alpha_crossing``).

Claims (from the abstract and its public summaries):
(a) α_S < α_C = 1 for every configuration — fails for any configuration still stable at the largest load;
(a') "all fixed points are stable below a critical load": each configuration has a stable phase, i.e. its stable
    fraction is ≥ 0.5 at the smallest load (otherwise α_S lies below the grid and there is nothing to be stable
    below; reported separately, because (a) alone is satisfied trivially by such configurations);
(b) threshold-linear (n = 1), negative threshold (θ = −0.5) and heavy-tailed patterns (CV = 2) give the largest
    α_S (argmax over the 18 configurations), and its three monotone parts, each averaged over the other two
    factors: α_S(n = 1) > α_S(n = 2), α_S(θ = −0.5) > α_S(θ = 0), α_S increasing in CV. In these averages a
    configuration without a stable phase counts as α_S = 0 (its lower bound) and one that never loses stability
    as the largest load (also a lower bound); ties count as failures.

What the σ → 0 limit predicts (a check on the numbers, derived here, not from the paper): with
φ = [h − θ]₊ⁿ a single pattern (P = 1) has the non-trivial eigenvalue n − 1 + nθ⟨x^{2−1/n}⟩/⟨x²⟩, so for
n > 1 and θ ∈ {0, −0.5} the pattern direction (the outlier) is unstable at every load: a supralinear φ
amplifies a uniform rescaling of the pattern. For n = 1 the P − 1 bulk eigenvalues sit exactly at 0 (marginal)
and the smoothing σ and the threshold decide their sign.

Default, full and tiny sizes are in ``conf/experiment/repro_critical_load.yaml``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hopbench.analysis.curves import alpha_crossing
from hopbench.analysis.stability import jacobian_eigenvalues, split_spectrum
from hopbench.app.compose import compose
from hopbench.core.system import System
from hopbench.repro import REPRODUCTIONS, Context, Verdict

ALPHA_C = 1.0  # storage capacity of the pseudo-inverse rule: P ≤ N patterns are exact fixed points
STATUS_CROSSING, STATUS_NO_STABLE_PHASE, STATUS_NEVER_UNSTABLE = "crossing", "no_stable_phase", "never_unstable"


@dataclass(frozen=True)
class Config:
    """One activation/pattern configuration of §6."""

    n: float
    threshold: float
    cv: float

    @property
    def label(self) -> str:
        return f"n={self.n:g}, θ={self.threshold:g}, CV={self.cv:g}"


def stored_system(config: Config, *, sigma: float, n_neurons: int, load: float, seed: int,
                  device: torch.device) -> System:
    """The §6 system: graded patterns stored as exact fixed points of ẋ = −x + φ(Wx), in float64."""
    return compose(model="modified", strategy="identity", activation="power",
                   activation_params={"n": config.n, "threshold": config.threshold, "sigma": sigma},
                   weights="pseudoinverse", weights_params={"graded": True, "ridge": 0.0}, dataset="lognormal",
                   dataset_params={"cv": config.cv}, n_neurons=n_neurons, load=load, seed=seed,
                   device=str(device), dtype="float64")


def reduced_spectra(system: System, x: Tensor) -> Tensor:
    """The P non-trivial Jacobian eigenvalues (B, P) at fixed points x (B, N): λ(−I + X⁺ diag(φ'(Wx)) W X).

    J = −I + D W with W = H X⁺ of rank P; its other N − P eigenvalues are exactly −1.
    """
    net = system.net
    X = system.data.patterns.to(net.device, net.dtype).T  # (N, P)
    H = net.W @ X  # = φ⁻¹(X), since X⁺X = I
    pinv = torch.linalg.solve(X.T @ X, X.T)  # (P, N)
    slope = system.model.curvature(x).values  # φ'(h) (B, N)
    M = pinv @ (slope.unsqueeze(-1) * H)
    return torch.linalg.eigvals(M - torch.eye(M.shape[-1], dtype=M.dtype, device=M.device))


def verdicts_from(max_real: Tensor, max_abs: Tensor, tol: float) -> Tensor:
    """0 stable / 1 marginal / 2 unstable, with analyse's rule: tolerance tol·max(1, max|λ|)."""
    t = tol * max_abs.clamp_min(1.0)
    return torch.where(max_real < -t, 0, torch.where(max_real > t, 2, 1))


def analyse_point(system: System, *, tol: float, n_outliers: int, max_points: int | None,
                  full_points: int | None) -> dict:
    """Stability of the stored patterns of one system: per-pattern spectra summarised into one row."""
    X = system.data.patterns[:max_points].to(system.device, system.dtype)
    B, N, P = X.shape[0], system.data.n_neurons, system.data.n_patterns
    residual = float(system.model.residual(X).abs().max())
    reduced = reduced_spectra(system, X)
    trivial = -1.0 if P < N else -math.inf  # the N − P eigenvalues of ker W
    max_real = reduced.real.amax(-1).clamp_min(trivial)
    max_abs = reduced.abs().amax(-1).clamp_min(1.0 if P < N else 0.0)
    n_full = B if full_points is None else min(B, full_points)
    check = math.nan
    if n_full > 0:
        full, _ = jacobian_eigenvalues(system.model, X[:n_full])
        check = float((full.real.amax(-1) - max_real[:n_full]).abs().max())
        max_real[:n_full], max_abs[:n_full] = full.real.amax(-1), full.abs().amax(-1)
    verdict = verdicts_from(max_real, max_abs, tol)
    k = max(0, min(n_outliers, P - 1))
    bulk_edge, outliers = split_spectrum(reduced, k)
    row = {"n_patterns": P, "n_analysed": B, "stable_fraction": float((verdict == 0).double().mean()),
           "marginal_fraction": float((verdict == 1).double().mean()),
           "unstable_fraction": float((verdict == 2).double().mean()),
           "max_real_mean": float(max_real.mean()), "max_real_median": float(max_real.median()),
           "bulk_edge_mean": float(bulk_edge.mean())}
    for i in range(n_outliers):
        row[f"outlier_{i + 1}_real_mean"] = float(outliers[:, i].real.mean()) if i < k else math.nan
    row.update({"fixed_point_residual_max": residual, "spectrum_check": check, "full_jacobian_points": n_full})
    return row


def sweep(configs: list[Config], params: dict, seeds: list[int], device: torch.device) -> pd.DataFrame:
    """One row per (configuration, load, seed)."""
    rows = []
    for config, load, seed in itertools.product(configs, params["loads"], seeds):
        system = stored_system(config, sigma=params["sigma"], n_neurons=params["n_neurons"], load=load, seed=seed,
                               device=device)
        row = analyse_point(system, tol=params["tol"], n_outliers=params["n_outliers"],
                            max_points=params["max_points"], full_points=params["full_jacobian_points"])
        rows.append({"n": config.n, "threshold": config.threshold, "cv": config.cv, "load": load,
                     "load_exact": row["n_patterns"] / params["n_neurons"], "seed": seed, **row})
    return pd.DataFrame(rows)


def critical_loads(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """α_S per configuration from the seed-averaged stable fraction, with its status and per-seed values."""
    rows = []
    for (n, theta, cv), group in frame.groupby(["n", "threshold", "cv"], sort=True):
        mean = group.groupby("load")["stable_fraction"].mean()
        alpha, note = alpha_crossing(list(mean.index), list(mean.values), level)
        per_seed = [alpha_crossing(list(g["load"]), list(g["stable_fraction"]), level)[0]
                    for _, g in group.groupby("seed")]
        if alpha is not None:
            status, ranked = STATUS_CROSSING, alpha
        elif float(mean.iloc[0]) < level:
            status, ranked = STATUS_NO_STABLE_PHASE, 0.0
        else:
            status, ranked = STATUS_NEVER_UNSTABLE, float(mean.index.max())
        rows.append({"n": n, "threshold": theta, "cv": cv, "alpha_s": alpha, "status": status, "note": note,
                     "alpha_s_for_ranking": ranked, "stable_fraction_at_first_load": float(mean.iloc[0]),
                     "stable_fraction_max": float(mean.max()),
                     "alpha_s_per_seed": ";".join("none" if a is None else f"{a:.4f}" for a in per_seed)})
    return pd.DataFrame(rows)


def _factor_means(table: pd.DataFrame, factor: str) -> dict[float, float]:
    return {float(k): float(v) for k, v in table.groupby(factor)["alpha_s_for_ranking"].mean().items()}


def claim_verdicts(table: pd.DataFrame, loads: list[float], level: float) -> list[Verdict]:
    """Claims (a), (a'), (b) and the three monotone parts of (b), from the α_S table."""
    first, last = min(loads), max(loads)
    never = table[table["status"] == STATUS_NEVER_UNSTABLE]
    none = table[table["status"] == STATUS_NO_STABLE_PHASE]
    labels = {s: [Config(r.n, r.threshold, r.cv).label for r in table[table["status"] == s].itertuples()]
              for s in (STATUS_NEVER_UNSTABLE, STATUS_NO_STABLE_PHASE)}
    out = [Verdict(
        "(a) α_S < α_C = 1 for every configuration (the stable fraction falls below 0.5 at some load < 1)",
        f"{len(table) - len(never)} of {len(table)} configurations lose stability below α = {last:g} "
        f"({len(none)} of them already at the smallest load α = {first:g})",
        f"every configuration crosses {level:g} within the loads {first:g}…{last:g}", bool(len(never) == 0),
        {"never_unstable": labels[STATUS_NEVER_UNSTABLE]})]
    out.append(Verdict(
        "(a') all stored fixed points are stable below α_S: every configuration has a stable phase",
        f"{len(table) - len(none)} of {len(table)} configurations have stable fraction ≥ {level:g} at "
        f"α = {first:g}", f"stable fraction ≥ {level:g} at the smallest load for all configurations",
        bool(len(none) == 0), {"no_stable_phase": labels[STATUS_NO_STABLE_PHASE]}))
    ranked = table.sort_values("alpha_s_for_ranking", ascending=False)
    best = ranked.iloc[0]
    top = ranked[np.isclose(ranked["alpha_s_for_ranking"], best["alpha_s_for_ranking"])]
    predicted = Config(min(table["n"]), min(table["threshold"]), max(table["cv"]))
    hit = any(Config(r.n, r.threshold, r.cv) == predicted for r in top.itertuples())
    out.append(Verdict(
        f"(b) threshold-linear, negative threshold, heavy-tailed patterns ({predicted.label}) give the largest α_S",
        f"largest α_S = {best['alpha_s_for_ranking']:.3f} at "
        f"{', '.join(Config(r.n, r.threshold, r.cv).label for r in top.itertuples())}",
        "the predicted configuration attains the maximum of α_S (no tie with another)", bool(hit and len(top) == 1),
        {"alpha_s_ranking": [f"{Config(r.n, r.threshold, r.cv).label}: {r.alpha_s_for_ranking:.3f} ({r.status})"
                             for r in ranked.itertuples()]}))
    by_n, by_theta, by_cv = (_factor_means(table, f) for f in ("n", "threshold", "cv"))
    n_lo, n_hi = min(by_n), max(by_n)
    out.append(Verdict(f"(b1) α_S is larger for n = {n_lo:g} than for n = {n_hi:g} (mean over θ and CV)",
                       f"{by_n[n_lo]:.3f} vs {by_n[n_hi]:.3f}", "strictly larger", bool(by_n[n_lo] > by_n[n_hi]),
                       {"mean_alpha_s_by_n": by_n}))
    t_neg, t_pos = min(by_theta), max(by_theta)
    out.append(Verdict(f"(b2) α_S is larger for θ = {t_neg:g} than for θ = {t_pos:g} (mean over n and CV)",
                       f"{by_theta[t_neg]:.3f} vs {by_theta[t_pos]:.3f}", "strictly larger",
                       bool(by_theta[t_neg] > by_theta[t_pos]), {"mean_alpha_s_by_threshold": by_theta}))
    cvs = sorted(by_cv)
    increasing = all(by_cv[a] < by_cv[b] for a, b in itertools.pairwise(cvs))
    out.append(Verdict("(b3) α_S increases with the patterns' CV (mean over n and θ)",
                       ", ".join(f"CV={c:g}: {by_cv[c]:.3f}" for c in cvs), "strictly increasing over the CVs",
                       bool(increasing), {"mean_alpha_s_by_cv": by_cv}))
    return out


def spectrum_loads(table: pd.DataFrame, config: Config, loads: list[float]) -> list[float]:
    """The grid loads just below and just above α_S of ``config`` (first and middle loads without a crossing)."""
    grid = sorted(loads)
    row = table[(table["n"] == config.n) & (table["threshold"] == config.threshold) & (table["cv"] == config.cv)]
    alpha = None if row.empty else row.iloc[0]["alpha_s"]
    if alpha is None or (isinstance(alpha, float) and math.isnan(alpha)):
        return [grid[0], grid[len(grid) // 2]]
    below = [a for a in grid if a < alpha] or grid[:1]
    above = [a for a in grid if a > alpha] or grid[-1:]
    return [below[-1], above[0]]


def spectra_at(config: Config, load: float, params: dict, seed: int, device: torch.device) -> dict:
    """Reduced spectra (B, P) of ``config`` at ``load`` with their bulk edges and outliers (numpy)."""
    system = stored_system(config, sigma=params["sigma"], n_neurons=params["n_neurons"], load=load, seed=seed,
                           device=device)
    X = system.data.patterns[:params["max_points"]].to(system.device, system.dtype)
    eigs = reduced_spectra(system, X)
    k = max(0, min(params["n_outliers"], eigs.shape[-1] - 1))
    bulk_edge, outliers = split_spectrum(eigs, k)
    return {"load": load, "eigs": eigs.cpu().numpy(), "bulk_edge": bulk_edge.cpu().numpy(),
            "outliers": outliers.cpu().numpy(), "n_trivial": system.data.n_neurons - system.data.n_patterns}


# --- figures ---------------------------------------------------------------------------------------------
CV_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
THETA_STYLES = ("-", "--", ":", "-.")


def draw_stable_fraction(frame: pd.DataFrame, table: pd.DataFrame, params: dict):
    """Stable fraction against load: one panel per n, colour per CV, line style per θ, α_S marked."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    ns, cvs = sorted(frame["n"].unique()), sorted(frame["cv"].unique())
    thetas = sorted(frame["threshold"].unique(), reverse=True)
    mean = frame.groupby(["n", "threshold", "cv", "load"], as_index=False)["stable_fraction"].mean()
    fig, axes = plt.subplots(1, len(ns), figsize=(5.2 * len(ns), 4.4), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        for (ci, cv), (ti, theta) in itertools.product(enumerate(cvs), enumerate(thetas)):
            g = mean[(mean["n"] == n) & (mean["threshold"] == theta) & (mean["cv"] == cv)].sort_values("load")
            colour, style = CV_COLOURS[ci % len(CV_COLOURS)], THETA_STYLES[ti % len(THETA_STYLES)]
            ax.plot(g["load"], g["stable_fraction"], style, marker="o", ms=3, color=colour, lw=1.5)
            row = table[(table["n"] == n) & (table["threshold"] == theta) & (table["cv"] == cv)].iloc[0]
            if row["status"] == STATUS_CROSSING:
                ax.plot([row["alpha_s"]], [params["level"]], marker="v", ms=9, color=colour, mec="k")
        ax.axhline(params["level"], color="k", lw=0.8, ls=":")
        ax.set(xlabel="load α = P/N", title=f"n = {n:g}", xlim=(0, 1), ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("stable fraction of stored fixed points")
    handles = [Line2D([], [], color=CV_COLOURS[i % len(CV_COLOURS)], lw=2, label=f"CV = {cv:g}")
               for i, cv in enumerate(cvs)]
    handles += [Line2D([], [], color="0.3", ls=THETA_STYLES[i % len(THETA_STYLES)], label=f"θ = {t:g}")
                for i, t in enumerate(thetas)]
    handles += [Line2D([], [], color="0.3", marker="v", ls="", mec="k", label="α_S (crossing of 0.5)"),
                Line2D([], [], color="k", ls=":", lw=0.8, label="level 0.5")]
    axes[0, -1].legend(handles=handles, loc="upper right", fontsize=8)
    fig.suptitle(f"Stability of stored graded patterns vs load (N = {params['n_neurons']}, σ = {params['sigma']:g}, "
                 f"{frame['seed'].nunique()} seed(s)); stable: max Re λ(J) < −{params['tol']:g}", fontsize=11)
    fig.tight_layout()
    return fig


def draw_spectra(panels: list[dict], config: Config, frame: pd.DataFrame, table: pd.DataFrame, params: dict):
    """Complex-plane spectra at two loads (bulk, outliers, bulk edge) and the spectral edges against load."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(5.4 * (len(panels) + 1), 4.6))
    for ax, panel in zip(axes, panels, strict=False):
        eigs, out = panel["eigs"], panel["outliers"]
        ax.scatter(eigs.real.ravel(), eigs.imag.ravel(), s=5, color="0.55", alpha=0.5, label="bulk (all patterns)")
        for i, colour in zip(range(out.shape[-1]), ("tab:red", "tab:orange"), strict=False):
            ax.scatter(out[:, i].real, out[:, i].imag, s=18, color=colour, label=f"outlier {i + 1}", zorder=3)
        edge = float(np.mean(panel["bulk_edge"]))
        ax.axvline(edge, color="tab:blue", ls="-.", lw=1.2, label=f"bulk edge (mean) = {edge:.2g}")
        ax.axvline(0, color="k", ls="--", lw=1, label="Re λ = 0")
        ax.set_xscale("symlog", linthresh=1e-3, linscale=1.5)
        ax.set(xlabel="Re λ(J)  (symlog, linear within ±10⁻³)", ylabel="Im λ(J)",
               title=f"α = {panel['load']:g}: {eigs.shape[0]} patterns; + {panel['n_trivial']} eigenvalues = −1 "
                     f"(ker W) each")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    g = frame[(frame["n"] == config.n) & (frame["threshold"] == config.threshold) & (frame["cv"] == config.cv)]
    g = g.groupby("load").mean(numeric_only=True).reset_index()
    ax.plot(g["load"], g["max_real_median"], "k-o", ms=3, label="max Re λ (median over patterns)")
    ax.plot(g["load"], g["bulk_edge_mean"], "-s", ms=3, color="tab:blue", label="bulk edge (mean)")
    for i, colour in zip(range(params["n_outliers"]), ("tab:red", "tab:orange"), strict=False):
        ax.plot(g["load"], g[f"outlier_{i + 1}_real_mean"], "-^", ms=3, color=colour,
                label=f"Re outlier {i + 1} (mean)")
    ax.axhline(0, color="k", ls="--", lw=1)
    row = table[(table["n"] == config.n) & (table["threshold"] == config.threshold) & (table["cv"] == config.cv)]
    if not row.empty and row.iloc[0]["status"] == STATUS_CROSSING:
        ax.axvline(row.iloc[0]["alpha_s"], color="tab:green", lw=1.2, label=f"α_S = {row.iloc[0]['alpha_s']:.3f}")
    ax.set_yscale("symlog", linthresh=1e-3, linscale=1.5)
    ax.set(xlabel="load α = P/N", ylabel="real part (symlog)", title="spectral edges against load")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle(f"Jacobian spectrum at the stored patterns, {config.label}, σ = {params['sigma']:g}, "
                 f"N = {params['n_neurons']} (non-trivial eigenvalues)", fontsize=11)
    fig.tight_layout()
    return fig


# --- the reproduction ------------------------------------------------------------------------------------
def resolve(params: dict) -> dict:
    """Defaults for every parameter (see the yaml for the sizes)."""
    loads = params.get("loads") or [round(0.05 * i, 4) for i in range(1, 20)]
    return {"n_neurons": int(params.get("n_neurons", 100)), "loads": [float(a) for a in loads],
            "cvs": [float(c) for c in params.get("cvs", (0.5, 1.0, 2.0))],
            "exponents": [float(n) for n in params.get("exponents", (1.0, 1.5, 2.0))],
            "thresholds": [float(t) for t in params.get("thresholds", (0.0, -0.5))],
            "sigma": float(params.get("sigma", 0.1)), "n_seeds": int(params.get("n_seeds", 1)),
            "level": float(params.get("level", 0.5)), "tol": float(params.get("tol", 1e-6)),
            "n_outliers": int(params.get("n_outliers", 2)), "max_points": params.get("max_points"),
            "full_jacobian_points": params.get("full_jacobian_points"),
            "spectrum": dict(params.get("spectrum") or {"n": 1.0, "threshold": -0.5, "cv": 2.0})}


@REPRODUCTIONS.register("critical_load")
def run(params: dict, ctx: Context) -> list[Verdict]:
    p = resolve(params)
    configs = [Config(n, t, cv) for n, t, cv in itertools.product(p["exponents"], p["thresholds"], p["cvs"])]
    seeds = [ctx.seed + k for k in range(p["n_seeds"])]
    frame = sweep(configs, p, seeds, ctx.device)
    table = critical_loads(frame, p["level"])
    ctx.csv("critical_load", frame)
    ctx.csv("alpha_s", table)
    verdicts = claim_verdicts(table, p["loads"], p["level"])
    verdicts.append(Verdict(
        "every stored pattern is an exact fixed point and the reduced spectrum reproduces the full Jacobian's",
        f"max residual {frame['fixed_point_residual_max'].max():.2e}, max |Δ max Re λ| "
        f"{np.nanmax(frame['spectrum_check'].to_numpy(dtype=float)):.2e}",
        "residual ≤ 1e-9 and spectrum check ≤ 1e-9",
        bool(frame["fixed_point_residual_max"].max() <= 1e-9 and np.nanmax(frame["spectrum_check"]) <= 1e-9)))
    shown = Config(float(p["spectrum"]["n"]), float(p["spectrum"]["threshold"]), float(p["spectrum"]["cv"]))
    if ctx.figures:
        panels = [spectra_at(shown, a, p, seeds[0], ctx.device) for a in spectrum_loads(table, shown, p["loads"])]
        ctx.figure("stable_fraction", lambda: draw_stable_fraction(frame, table, p))
        ctx.figure("spectrum", lambda: draw_spectra(panels, shown, frame, table, p))
    return verdicts
