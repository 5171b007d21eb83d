"""Storage capacity of the Hopfield network: α_c ≈ 0.138 (Amit, Gutfreund & Sompolinsky 1985/1987).

System: P random ±1 patterns stored in N neurons by the Hebbian rule W = N⁻¹ Σ ξξᵀ with zero diagonal (the
engine's ``hebbian`` weights), b = 0, the original model (eq. 1) ẏ = −y + W tanh(βy) with a high gain
(β = 10 by default, close to the zero-temperature sign network of the classical result). Cues: every stored
pattern with exactly round(flip·N) signs flipped (``flip`` = 5 %), mapped to y₀ = W a₀ (the engine's affine cue
map); each network's cues are integrated as one batch (``hopbench.solve.integrate`` via
``hopbench.analysis.metrics.retrieval``). Success is the engine's retrieval criterion (docs/design.md §5.1): the
cosine of the final activity tanh(βy) with the cued pattern ≥ ``threshold`` (0.95). With β = 10 the final activities are
saturated, so this cosine is within a few 1e-3 of the sign overlap m = N⁻¹ Σ sign(y_i) ξ_i, which is reported
beside it (``mean_sign_overlap``, ``sign_accuracy``).

Measured: the retrieval accuracy against the load α = P/N (exact P/N of each grid point, P = round(αN)) for
every N in ``sizes``, averaged over independent pattern sets (seed = run seed + k; each seed draws new
patterns, hence new weights and cues). Within one seed the engine's pattern stream makes the sets nested
across loads (the P patterns at a load are the first P of the next one), so a seed's curve follows one memory
as patterns are added; different seeds are independent. α_c(N) is the load where the seed-averaged accuracy
first falls below ``level`` = 0.5, linearly interpolated between the two grid loads around it
(``hopbench.app.tasks.alpha_crossing``, the interpolation that the report uses across sweeps, docs/design.md §5.2). The
engine's ``task=capacity`` bisects P within one network at level 0.9; it is not used here because the
crossing of a single network's accuracy is too noisy to show finite-size trends and the classical α_c is a
50 % point. A spread is reported from the per-seed crossings.

Theory. In the N → ∞ limit (replica-symmetric AGS theory) the retrieval state exists up to α_c ≈ 0.138, where
its overlap jumps from m ≈ 0.967 to the spin-glass value; so at α_c the retrieval state still passes a 0.95
criterion and the accuracy curve becomes a step at 0.138 (given that a 5 % cue, m₀ = 0.9, lies in the basin).
For finite N the step is smeared and shifted: with sign neurons and a 0.95-overlap criterion the apparent
capacity at small N typically exceeds 0.138, with finite-size corrections ~ N^{−1/2}. A continuous tanh network,
a cosine criterion and a finite cue noise change the details, so the side of 0.138 on which α_c(N) sits and
how fast it approaches are measured, not assumed. An extrapolation α_c(N) = α_∞ + c N^{−1/2} (least squares
over the sizes) is printed and stored with the verdicts; it is not a claim.

Claims (verdicts computed from the run):
(a) |α_c(N) − 0.138| decreases with N (strictly, over the sizes in increasing order) — may fail honestly;
(b) |α_c(N_max) − 0.138| ≤ ``tol_alpha`` (0.03);
(c) every trajectory ends with a status (the status counts sum to the number of cues at every point) and at
    every grid load below α_c(N) the converged fraction is ≥ ``converged_min`` (0.95).

Default, full and tiny sizes are in ``conf/experiment/repro_hopfield_capacity.yaml``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from hopbench.analysis.metrics import retrieval
from hopbench.app.tasks import alpha_crossing
from hopbench.core.system import System, compose
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import STATUSES, SolverConfig

ALPHA_AGS = 0.138  # AGS capacity of the Hebbian Hopfield network (N → ∞)
OVERLAP_AGS = 0.967  # overlap of the retrieval state at α_c (AGS)

DEFAULTS = {
    "sizes": [100, 200, 400], "loads": [round(0.06 + 0.01 * i, 2) for i in range(15)], "seeds": [16, 8, 4],
    "n_cues": 1, "beta": 10.0, "flip": 0.05, "threshold": 0.95, "level": 0.5, "tol_alpha": 0.03,
    "alpha_ref": ALPHA_AGS, "converged_min": 0.95, "dtype": "float64", "cpu_threads": 1,
    "solver": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-6, "tol": 1e-4, "t_max": 200.0},
}


def settings(params: dict) -> dict:
    """The parameters with their defaults; ``seeds`` becomes one count per size."""
    p = {key: params.get(key, value) for key, value in DEFAULTS.items()}
    p["sizes"] = [int(n) for n in p["sizes"]]
    p["loads"] = sorted(float(a) for a in p["loads"])
    seeds = p["seeds"]
    counts = [int(seeds)] * len(p["sizes"]) if isinstance(seeds, int | float) else [int(s) for s in seeds]
    if len(counts) != len(p["sizes"]):
        raise ValueError(f"seeds: one count per size expected, got {counts} for sizes {p['sizes']}")
    p["seeds"] = counts
    for key in ("beta", "flip", "threshold", "level", "tol_alpha", "alpha_ref", "converged_min"):
        p[key] = float(p[key])
    p["n_cues"], p["cpu_threads"] = int(p["n_cues"]), int(p["cpu_threads"])
    p["solver"] = dict(p["solver"])
    return p


def memory(n: int, n_patterns: int, *, beta: float, seed: int, device: torch.device, dtype: str) -> System:
    """Hebbian storage of P random ±1 patterns (zero diagonal), original model (eq. 1), tanh with gain β."""
    return compose(model="original", activation="tanh", activation_params={"beta": beta}, weights="hebbian",
                   weights_params={"zero_diagonal": True}, dataset="random_binary", n_neurons=n,
                   n_patterns=n_patterns, seed=seed, device=str(device), dtype=dtype, cue_map="affine")


def pattern_counts(n: int, loads: Sequence[float]) -> list[int]:
    """The distinct P = round(αN) ≥ 1 of the load grid at size N."""
    return sorted({max(1, round(a * n)) for a in loads})


def measure(system: System, solver: SolverConfig, *, flip: float, n_cues: int, threshold: float) -> dict:
    """One network: the engine's retrieval measurement plus the sign overlap of the same final states."""
    m = retrieval(system, system.model, ("flip", {"level": flip}), solver, n_cues=n_cues, threshold=threshold)
    table = m.tables["retrieval"]
    traj = m.extras["trajectories"]
    with torch.no_grad():
        a = system.model.readout(traj.x)[:, system.net.visible].double().cpu()
    targets = system.data.patterns[torch.tensor(table["pattern"].to_numpy())].double()
    sign_overlap = (torch.sign(a) * targets).mean(-1)
    s = m.scalars
    return {"trials": len(table), "retrieval_accuracy": s["retrieval_accuracy"],
            "nearest_accuracy": s["nearest_accuracy"], "mean_overlap": s["mean_overlap"],
            "sign_accuracy": float((sign_overlap >= threshold).double().mean()),
            "mean_sign_overlap": float(sign_overlap.mean()), "n_nonfinite_overlap": s["n_nonfinite_overlap"],
            "converged_fraction": s["converged_fraction"], "stalled_fraction": s["stalled_fraction"],
            **{k: s["status_counts"][k] for k in STATUSES}, "mean_nfe": s["mean_nfe"], "mean_time": s["mean_time"],
            "solver_notes": len(traj.notes)}


def sweep(p: dict, ctx: Context) -> pd.DataFrame:
    """One row per (N, P, seed)."""
    solver = SolverConfig(**p["solver"])
    rows = []
    for n, n_seeds in zip(p["sizes"], p["seeds"], strict=True):
        start = time.perf_counter()
        for n_patterns in pattern_counts(n, p["loads"]):
            for k in range(n_seeds):
                system = memory(n, n_patterns, beta=p["beta"], seed=ctx.seed + k, device=ctx.device,
                                dtype=p["dtype"])
                rows.append({"N": n, "alpha": n_patterns / n, "P": n_patterns, "seed": ctx.seed + k,
                             **measure(system, solver, flip=p["flip"], n_cues=p["n_cues"],
                                       threshold=p["threshold"])})
        print(f"hopfield_capacity: N = {n}, {n_seeds} seeds: {time.perf_counter() - start:.1f} s", flush=True)
    return pd.DataFrame(rows)


def curve(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged curve: one row per (N, P); fractions over every cue (all seeds have the same count)."""
    grouped = per_seed.groupby(["N", "P"], sort=True)
    out = grouped.agg(alpha=("alpha", "first"), seeds=("seed", "nunique"), trials=("trials", "sum"),
                      accuracy=("retrieval_accuracy", "mean"), accuracy_seed_std=("retrieval_accuracy", "std"),
                      nearest_accuracy=("nearest_accuracy", "mean"), mean_overlap=("mean_overlap", "mean"),
                      sign_accuracy=("sign_accuracy", "mean"), mean_sign_overlap=("mean_sign_overlap", "mean"),
                      converged_fraction=("converged_fraction", "mean"), stalled_fraction=("stalled_fraction", "mean"),
                      **{k: (k, "sum") for k in STATUSES}, n_nonfinite_overlap=("n_nonfinite_overlap", "sum"),
                      mean_nfe=("mean_nfe", "mean"), mean_time=("mean_time", "mean"),
                      solver_notes=("solver_notes", "sum")).reset_index()
    out["accuracy_stderr"] = out["accuracy_seed_std"] / np.sqrt(out["seeds"])
    return out[["N", "alpha", "P", "seeds", "trials", "accuracy", "accuracy_stderr", "accuracy_seed_std",
                "nearest_accuracy", "sign_accuracy", "mean_overlap", "mean_sign_overlap", "converged_fraction",
                "stalled_fraction", *STATUSES, "n_nonfinite_overlap", "mean_nfe", "mean_time", "solver_notes"]]


def fit_finite_size(sizes: Sequence[int], alphas: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares α_c(N) = α_∞ + c N^{−1/2} over the sizes with a crossing (None with fewer than 2)."""
    if len(sizes) < 2:
        return None
    A = np.stack([np.ones(len(sizes)), np.asarray(sizes, dtype=float) ** -0.5], -1)
    (alpha_inf, c), *_ = np.linalg.lstsq(A, np.asarray(alphas, dtype=float), rcond=None)
    return float(alpha_inf), float(c)


def critical_loads(points: pd.DataFrame, per_seed: pd.DataFrame, p: dict) -> tuple[pd.DataFrame, tuple | None]:
    """α_c per N from the seed-averaged curve, the per-seed crossings' spread and the N^{−1/2} fit."""
    ref, rows = p["alpha_ref"], []
    for n, sub in points.groupby("N", sort=True):
        alpha, note = alpha_crossing(list(sub["alpha"]), list(sub["accuracy"]), p["level"])
        seeds = [alpha_crossing(list(g["alpha"]), list(g["retrieval_accuracy"]), p["level"])[0]
                 for _, g in per_seed[per_seed["N"] == n].groupby("seed")]
        found = [a for a in seeds if a is not None]
        rows.append({"N": int(n), "alpha_c": alpha, "alpha_c_minus_ref": None if alpha is None else alpha - ref,
                     "relative": None if alpha is None else (alpha - ref) / ref,
                     "abs_deviation": None if alpha is None else abs(alpha - ref),
                     "alpha_c_seed_mean": float(np.mean(found)) if found else None,
                     "alpha_c_seed_stderr": float(np.std(found, ddof=1) / math.sqrt(len(found)))
                     if len(found) > 1 else None,
                     "seeds": len(seeds), "seeds_with_crossing": len(found), "note": note})
    table = pd.DataFrame(rows)
    ok = table[table["alpha_c"].notna()]
    fit = fit_finite_size(list(ok["N"]), list(ok["alpha_c"]))
    table["fit_prediction"] = (None if fit is None else
                               [fit[0] + fit[1] / math.sqrt(n) for n in table["N"]])
    return table, fit


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "none" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def claim_verdicts(points: pd.DataFrame, table: pd.DataFrame, fit: tuple | None, p: dict) -> list[Verdict]:
    ref, tol = p["alpha_ref"], p["tol_alpha"]
    by_n = {int(r.N): r for r in table.itertuples()}
    text = "; ".join(f"N = {n}: α_c = {_fmt(r.alpha_c)} (|Δ| = {_fmt(r.abs_deviation)})" for n, r in by_n.items())
    missing = [n for n, r in by_n.items() if r.alpha_c is None or pd.isna(r.alpha_c)]
    deviations = [float(r.abs_deviation) for r in by_n.values() if r.alpha_c is not None and not pd.isna(r.alpha_c)]
    monotone = not missing and len(deviations) >= 2 and all(b < a for a, b in itertools.pairwise(deviations))
    details = {"definition": f"α_c = load where the seed-averaged retrieval accuracy (cosine ≥ {p['threshold']:g}) "
                             f"first falls below {p['level']:g}, linearly interpolated",
               "no_crossing": {str(n): by_n[n].note for n in missing},
               "fit_alpha_inf": None if fit is None else fit[0], "fit_c": None if fit is None else fit[1]}
    out = [Verdict(f"(a) |α_c(N) − {ref:g}| decreases with N over N = {list(by_n)} (finite-size approach to AGS)",
                   text, "strictly decreasing in N; every N has a crossing in the load grid", bool(monotone),
                   details)]
    n_max = max(by_n)
    last = by_n[n_max]
    found = last.alpha_c is not None and not pd.isna(last.alpha_c)
    out.append(Verdict(
        f"(b) α_c at the largest size N = {n_max} is within {tol:g} of the AGS capacity {ref:g}",
        f"α_c = {_fmt(last.alpha_c)} (α_c − {ref:g} = {_fmt(last.alpha_c_minus_ref, '+.4f')}, "
        f"{_fmt(None if not found else 100 * last.relative, '+.1f')} %; per-seed crossings "
        f"{_fmt(last.alpha_c_seed_mean)} ± {_fmt(last.alpha_c_seed_stderr)}); extrapolation α_∞ + c/√N: "
        f"α_∞ = {_fmt(None if fit is None else fit[0])}",
        f"|α_c − {ref:g}| ≤ {tol:g}", bool(found and abs(last.alpha_c - ref) <= tol), details))
    status_total = points[list(STATUSES)].sum(axis=1)
    all_status = bool((status_total == points["trials"]).all())
    below = []
    for r in points.itertuples():
        alpha_c = by_n[int(r.N)].alpha_c
        note = by_n[int(r.N)].note or ""
        if (alpha_c is not None and not pd.isna(alpha_c) and r.alpha < alpha_c) or (
                (alpha_c is None or pd.isna(alpha_c)) and note.startswith("above")):
            below.append(r)
    worst = min(below, key=lambda r: r.converged_fraction) if below else None
    conv_ok = all(r.converged_fraction >= p["converged_min"] for r in below)
    totals = {k: int(points[k].sum()) for k in STATUSES}
    out.append(Verdict(
        f"(c) every trajectory has a status, and at every load below α_c(N) ≥ {p['converged_min']:g} of the "
        "trajectories converge",
        f"statuses over {int(points['trials'].sum())} trajectories: {totals}; "
        + (f"min converged fraction below α_c = {worst.converged_fraction:.3f} (N = {int(worst.N)}, "
           f"α = {worst.alpha:.3f}) over {len(below)} points" if worst is not None else "no load below α_c"),
        f"status counts sum to the cues at every point; converged fraction ≥ {p['converged_min']:g} below α_c",
        bool(all_status and conv_ok and below),
        {"overall_converged_fraction": totals["converged"] / max(1, int(points["trials"].sum())),
         "points_below_alpha_c": len(below), "solver_notes": int(points["solver_notes"].sum())}))
    return out


def print_table(table: pd.DataFrame, fit: tuple | None, p: dict) -> None:
    """Finite-size corrections side by side (stdout)."""
    ref = p["alpha_ref"]
    print(f"\nhopfield_capacity: α_c(N) (accuracy = {p['level']:g} crossing) vs AGS α_c = {ref:g}")
    print(f"{'N':>6} {'alpha_c':>9} {'- ' + format(ref, 'g'):>9} {'relative':>9} {'seeds':>6} "
          f"{'per-seed':>17} {'fit a+c/sqrtN':>14}")
    for r in table.itertuples():
        seed = f"{_fmt(r.alpha_c_seed_mean)}±{_fmt(r.alpha_c_seed_stderr)}"
        print(f"{r.N:>6} {_fmt(r.alpha_c):>9} {_fmt(r.alpha_c_minus_ref, '+.4f'):>9} "
              f"{_fmt(None if r.relative is None or pd.isna(r.relative) else 100 * r.relative, '+.1f') + '%':>9} "
              f"{r.seeds:>6} {seed:>17} {_fmt(r.fit_prediction):>14}")
    if fit is not None:
        print(f"  extrapolation α_c(N) = α_∞ + c/√N: α_∞ = {fit[0]:.4f}, c = {fit[1]:.3f}")


@REPRODUCTIONS.register("hopfield_capacity")
def run(params: dict, ctx: Context) -> list[Verdict]:
    """Retrieval accuracy vs α = P/N for several N; α_c(N) against the AGS capacity 0.138."""
    p = settings(params)
    with cpu_threads(p["cpu_threads"], ctx.device):
        per_seed = sweep(p, ctx)
    points = curve(per_seed)
    table, fit = critical_loads(points, per_seed, p)
    ctx.csv("curve", points)
    ctx.csv("alpha_c", table)
    ctx.csv("per_seed", per_seed)
    print_table(table, fit, p)
    ctx.figure("hopfield_capacity", lambda: _draw(points, table, p))
    return claim_verdicts(points, table, fit, p)


def _draw(points: pd.DataFrame, table: pd.DataFrame, p: dict):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, points["N"].nunique()))
    alpha_c = {int(r.N): r.alpha_c for r in table.itertuples()}
    for color, (n, sub) in zip(colors, points.groupby("N", sort=True), strict=True):
        seeds = int(sub["seeds"].iloc[0])
        err = sub["accuracy_stderr"].fillna(0.0)
        left.plot(sub["alpha"], sub["accuracy"], "o-", color=color, ms=4, label=f"N = {n} ({seeds} pattern sets)")
        left.fill_between(sub["alpha"], sub["accuracy"] - err, sub["accuracy"] + err, color=color, alpha=0.2)
        a = alpha_c.get(int(n))
        if a is not None and not pd.isna(a):
            left.plot([a], [p["level"]], "D", color=color, ms=9, mec="k", label=f"α_c(N = {n}) = {a:.3f}")
        right.plot(sub["alpha"], sub["mean_sign_overlap"], "o-", color=color, ms=4, label=f"N = {n}")
    for ax in (left, right):
        ax.axvline(p["alpha_ref"], color="k", ls="--", lw=1.2, label=f"AGS α_c = {p['alpha_ref']:g}")
        ax.grid(alpha=0.3)
    left.axhline(p["level"], color="0.5", ls=":", lw=1, label=f"accuracy {p['level']:g} (defines α_c)")
    right.axhline(OVERLAP_AGS, color="tab:red", ls="-.", lw=1, label=f"AGS overlap at α_c ≈ {OVERLAP_AGS}")
    right.axhline(p["threshold"], color="0.5", ls=":", lw=1, label=f"success threshold {p['threshold']:g}")
    left.set(xlabel="load α = P/N", ylabel="retrieval accuracy (seed average, ± s.e.)", ylim=(-0.03, 1.03),
             title=f"Retrieval accuracy: cosine(final tanh(βy), ξ) ≥ {p['threshold']:g}")
    right.set(xlabel="load α = P/N", ylabel="mean final overlap m = ⟨sign(y)·ξ⟩/N",
              title="Mean final overlap with the cued pattern")
    left.legend(fontsize=8, loc="lower left")
    right.legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Hebbian Hopfield capacity: original model (eq. 1), tanh β = {p['beta']:g}, ±1 patterns, "
                 f"cues with {100 * p['flip']:g} % flipped signs", fontsize=12)
    fig.tight_layout()
    return fig
