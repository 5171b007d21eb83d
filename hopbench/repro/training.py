"""Training that beats the storage rules (docs/design.md §7), and what learning does to dead neurons.

Memories: the original model (eq. 1) with tanh of gain β = 4 (tanh's default), b = 0, N = 64, on
scikit-learn's binarised 8×8 digits (±1; the first P images — strongly correlated patterns, some pairs differ in
a few pixels) and on random ±1 patterns, at several numbers of patterns P. At each (data set, P) the same
patterns are stored by

- the Hebbian rule W = N⁻¹Σξξᵀ (zero diagonal), Storkey's rule and the pseudo-inverse (projection) rule;
- training (``hopbench.analysis.training.train``) from the pseudo-inverse weights, four variants: the
  fixed-point objective and end-to-end denoising, each without and with the Jacobian-stability penalty
  (``stability_weight``); and denoising from the Hebbian weights where ``hebbian_start`` lists the load.
  The data loss is ``auto`` (cross-entropy for tanh and ±1 patterns); denoising integrates the training cues
  with rk4 (step 0.5, horizon 5: eq. 1 with these weights is not stiff — measured faster than dopri5 at the same
  losses). Training cues come from the stream "training cues", the early-stopping validation from "validation
  cues"; both are flips of ``flip`` = 10 % of the bits.

Measured for every weight set, with the benchmark's solver (dopri5 to a steady state, float64):
- ``accuracy``: retrieval (§5.1, cosine ≥ ``threshold`` = 0.95) of ``n_cues`` cues per pattern with ``flip``
  flipped bits from the evaluation's own stream ("cues", the one ``task=evaluate`` uses) — held out: neither
  trained nor validated on;
- ``basin``: the largest flip fraction of ``basin_flips`` up to which every level is retrieved with accuracy ≥
  ``level`` (0.9), from ``basin_cues`` cues per pattern and level (0 when even the smallest level fails);
- ``spurious_rate``: ``hopbench.analysis.metrics.spurious`` from ``n_states`` random ±1 starts (spurious among the
  polished fixed points reached), with the distinct spurious attractors and the share of starts that reach no
  fixed point (stall, max_time, diverged);
- at the fixed points reached from the stored patterns (Newton-polished, §5.4): the Jacobian-stable fraction,
  the dead fraction (nullity Λ / N, Λ ≤ 1e-6 — for tanh a saturated unit) and the energy-inconclusive fraction of
  eq. 4 under the original model, and of E3 under the modified model (eq. 9, R = I − WᵀΛ) on the same W.

The same stability table is measured at every validation of the trained runs at ``probe_loads``: how the dead
fraction and the verdicts of eq. 4 and E3 change as the weights learn.

Claims (verdicts computed from the run; what it does not support fails):
(a) on digits at P = ``at_least[1]`` a trained weight set (from the pseudo-inverse or the Hebbian start)
    retrieves the held-out cues at least as well as the pseudo-inverse rule;
(b) on digits at P = ``better[1]`` a trained weight set retrieves them strictly better;
(c) denoising training beats the pseudo-inverse above its capacity: at every (data set, P) where the
    pseudo-inverse's accuracy is < ``level``, the denoising-trained accuracy is higher;
(d) denoising training enlarges the basins: its basin is at least the pseudo-inverse's at every (data set, P);
(e) denoising from the Hebbian start matches the pseudo-inverse rule (accuracy ≥ its) wherever it is run;
(f) the stability penalty makes every stored pattern a Jacobian-stable fixed point of eq. 1: stable fraction 1
    for both penalised variants at every (data set, P);
(g) eq. 4 is inconclusive exactly where neurons die (Prop. 1, eq. 6), at every probed training step: over the
    original's Jacobian-stable stored fixed points, (verdict inconclusive) ⇔ (dead fraction > 0) on ≥ 99 %;
(h) E3 has no flat directions at dead neurons as the weights learn (Prop. 5.3): over the probed validations, of
    the modified model's stored fixed points with dead neurons ≤ 1 % are E3-inconclusive (E3 can only be flat
    where I − ΛW is singular, i.e. where eq. 1's Jacobian is marginal too);
(i) learning kills neurons: at every (data set, P) the denoising-trained (kept) weights have a larger dead fraction
    than the pseudo-inverse weights they started from.

Default, full and tiny sizes are in ``conf/experiment/repro_training.yaml``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from hopbench.analysis.metrics import retrieval, spurious, stability_at_patterns
from hopbench.analysis.stability import StabilityConfig
from hopbench.analysis.training import TrainConfig, train
from hopbench.app.compose import compose
from hopbench.core.data import Flip
from hopbench.core.system import System
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import SolverConfig

PASS_AT_LEAST, PASS_AT_MOST = 0.99, 0.01
RULES = ("hebbian", "storkey", "pseudoinverse")
#: trained variants: objective, stability weight, the storage rule they start from
VARIANTS = {
    "fixed_point": {"objective": "fixed_point", "stability_weight": 0.0, "start": "pseudoinverse"},
    "fixed_point_stability": {"objective": "fixed_point", "stability_weight": 1.0, "start": "pseudoinverse"},
    "denoise": {"objective": "denoise", "stability_weight": 0.0, "start": "pseudoinverse"},
    "denoise_stability": {"objective": "denoise", "stability_weight": 1.0, "start": "pseudoinverse"},
    "denoise_hebbian": {"objective": "denoise", "stability_weight": 0.0, "start": "hebbian"},
}
#: the stability columns of the tables, per model of the pair
STABILITY = ("stable_fraction", "dead_fraction", "energy_inconclusive_fraction")
#: end-state classes of random starts that reach no fixed point
UNRESOLVED = ("stall", "max_time", "diverged")

DEFAULTS: dict[str, Any] = {
    "n_neurons": 64, "datasets": {"digits": [20, 30, 40], "random_binary": [16, 32, 48]},
    "hebbian_start": {"digits": [20, 30]}, "probe_loads": {"digits": [30]},
    "beta": 4.0, "flip": 0.1, "threshold": 0.95, "level": 0.9, "n_cues": 10,
    "basin_flips": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3], "basin_cues": 2, "n_states": 100,
    "at_least": ["digits", 20], "better": ["digits", 30],
    "train": {"steps": 300, "lr": 0.01, "method": "rk4", "step_size": 0.5, "horizon": 5.0, "cues_per_pattern": 4,
              "validate_every": 10, "val_cues_per_pattern": 4, "patience": 15},
    "stability_tol": 1e-6, "dead_tol": 1e-6, "dtype": "float64", "cpu_threads": 1,
    "solver": {"method": "dopri5", "rtol": 1e-5, "atol": 1e-6, "tol": 1e-4, "t_max": 200.0},
}


def settings(params: dict) -> dict:
    """The parameters with their defaults (``train`` merged key by key)."""
    p = {key: params.get(key, value) for key, value in DEFAULTS.items()}
    p["train"] = {**DEFAULTS["train"], **dict(params.get("train") or {})}
    TrainConfig(**p["train"])  # bad training settings fail before any compute
    p["datasets"] = {name: [int(x) for x in loads] for name, loads in dict(p["datasets"]).items()}
    for key in ("hebbian_start", "probe_loads"):
        p[key] = {name: [int(x) for x in loads] for name, loads in dict(p[key] or {}).items()}
    p["basin_flips"] = sorted(float(f) for f in p["basin_flips"])
    p["solver"] = dict(p["solver"])
    return p


def memory(dataset: str, n_patterns: int, weights: str, p: dict, seed: int, device: torch.device) -> System:
    """The original model (eq. 1), tanh with gain β, b = 0, on ``dataset``'s first P patterns stored by ``weights``."""
    return compose(model="original", activation="tanh", activation_params={"beta": p["beta"]}, weights=weights,
                   dataset=dataset, n_neurons=p["n_neurons"], n_patterns=n_patterns, seed=seed, device=str(device),
                   dtype=p["dtype"])


def stability_pair(system: System, p: dict, solver: SolverConfig) -> dict[str, float]:
    """Stability at the stored patterns under eq. 1 (energy eq. 4) and eq. 9 with R = I − WᵀΛ (energy E3) on the
    same W; plus, over the original's Jacobian-stable points, how often (eq. 4 inconclusive) ⇔ (dead neurons)."""
    config = StabilityConfig(tol=p["stability_tol"], dead_tol=p["dead_tol"])
    out: dict[str, float] = {}
    pair = {"eq1": system, "eq9": system.with_model("modified", strategy="i_minus_wt_lambda", energy="e3")}
    for label, member in pair.items():
        m = stability_at_patterns(member, member.model, solver, config, max_points=system.data.n_patterns,
                                  threshold=p["threshold"])
        out.update({f"{label}_{k}": m.scalars[k] for k in STABILITY})
        table = m.tables["stability"]
        if label == "eq1":
            stable = table[table["jacobian_verdict"] == "stable"]
            match = (stable["energy_verdict"] == "inconclusive") == (stable["dead_fraction"] > 0)
            out.update({"eq1_stored_fraction": m.scalars["stored_fraction"], "eq1_stable_points": len(stable),
                        "eq4_matches_dead": int(match.sum())})
        else:
            dead = table[table["dead_fraction"] > 0]
            flat = (table["energy_verdict"] == "inconclusive") & (table["jacobian_verdict"] == "marginal")
            out.update({"eq9_dead_points": len(dead),
                        "e3_inconclusive_dead_points": int((dead["energy_verdict"] == "inconclusive").sum()),
                        "e3_inconclusive_marginal_points": int(flat.sum())})
    return out


def measure(system: System, p: dict, solver: SolverConfig) -> dict[str, Any]:
    """Held-out retrieval, basin size, spurious rate and the stability pair of one weight set."""
    m = retrieval(system, system.model, Flip(level=p["flip"]), solver, n_cues=p["n_cues"], threshold=p["threshold"])
    basin, by_flip = 0.0, {}
    for flip in p["basin_flips"]:
        by_flip[flip] = retrieval(system, system.model, Flip(level=flip), solver, n_cues=p["basin_cues"],
                                  threshold=p["threshold"]).scalars["retrieval_accuracy"]
    for flip in p["basin_flips"]:
        if by_flip[flip] < p["level"]:
            break
        basin = flip
    s = spurious(system, system.model, solver, n_states=p["n_states"], threshold=p["threshold"])
    return {"accuracy": m.scalars["retrieval_accuracy"], "mean_overlap": m.scalars["mean_overlap"],
            "converged_fraction": m.scalars["converged_fraction"], "basin": basin,
            **{f"accuracy_flip_{f:g}": a for f, a in by_flip.items()}, "spurious_rate": s.scalars["spurious_rate"],
            "n_spurious_attractors": s.scalars["n_spurious_attractors"],
            "random_unresolved_fraction": sum(s.scalars[f"random_{c}_fraction"] for c in UNRESOLVED),
            **stability_pair(system, p, solver)}


def sweep(p: dict, ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (data set, P, weights) and one per validation of every trained run (the history)."""
    solver = SolverConfig(**p["solver"])
    rows, steps = [], []
    for dataset, loads in p["datasets"].items():
        for n_patterns in loads:
            start = time.perf_counter()
            where = {"dataset": dataset, "P": n_patterns, "load": n_patterns / p["n_neurons"]}
            for rule in RULES:
                system = memory(dataset, n_patterns, rule, p, ctx.seed, ctx.device)
                rows.append({**where, "weights": rule, "trained": False, **measure(system, p, solver)})
            for name, variant in VARIANTS.items():
                if variant["start"] == "hebbian" and n_patterns not in p["hebbian_start"].get(dataset, []):
                    continue
                probed = n_patterns in p["probe_loads"].get(dataset, [])
                done = _train(memory(dataset, n_patterns, variant["start"], p, ctx.seed, ctx.device), variant, p,
                             solver, ctx, f"{dataset}_P{n_patterns}_{name}", probed)
                rows.append({**where, "weights": name, "trained": True, **done["summary"],
                             **measure(done["system"], p, solver)})
                steps += [{**where, "weights": name, **{k: v for k, v in row.items() if k != "time_s"}}
                          for row in done["history"] if "val_accuracy" in row]  # no wall time in committed files
            print(f"training: {dataset}, P = {n_patterns}: {time.perf_counter() - start:.1f} s", flush=True)
    return pd.DataFrame(rows), pd.DataFrame(steps)


def _train(system: System, variant: dict, p: dict, solver: SolverConfig, ctx: Context, label: str,
           probed: bool) -> dict:
    cfg = TrainConfig(**{**p["train"], "objective": variant["objective"],
                         "stability_weight": variant["stability_weight"]})
    log = (lambda row: ctx.recorder.log(row, prefix=f"train/{label}")) if ctx.recorder is not None else None
    result = train(system, cfg, cue=Flip(level=p["flip"]), solver=solver,
                   threshold=p["threshold"], probe=(lambda s: stability_pair(s, p, solver)) if probed else None,
                   on_log=log)
    summary = {"start": variant["start"], "objective": variant["objective"],
               "stability_weight": variant["stability_weight"], "stop_reason": result.stop_reason,
               "steps_run": result.steps_run, "best_step": result.best_step,
               "val_accuracy_start": result.history[0]["val_accuracy"],
               "val_accuracy_kept": result.best["val_accuracy"]}
    return {"system": result.system, "history": result.history, "summary": summary}


def _row(table: pd.DataFrame, dataset: str, n_patterns: int, weights: str) -> pd.Series | None:
    rows = table[(table["dataset"] == dataset) & (table["P"] == n_patterns) & (table["weights"] == weights)]
    return None if rows.empty else rows.iloc[0]


def _pairs(table: pd.DataFrame) -> list[tuple[str, int, pd.Series, pd.Series]]:
    """(dataset, P, pseudo-inverse row, denoise row) for every load where both were run, in (dataset, P) order."""
    out = []
    for (dataset, n_patterns), group in table.groupby(["dataset", "P"], sort=True):
        pinv, den = _row(group, dataset, n_patterns, "pseudoinverse"), _row(group, dataset, n_patterns, "denoise")
        if pinv is not None and den is not None:
            out.append((dataset, int(n_patterns), pinv, den))
    return out


def _colors(names: list[str]) -> dict:
    """One tab10 colour per name, the same in every figure of the reproduction."""
    import matplotlib.pyplot as plt

    return dict(zip(names, plt.cm.tab10(np.linspace(0, 1, 10))[: len(names)], strict=True))


def claim_verdicts(table: pd.DataFrame, steps: pd.DataFrame, p: dict) -> list[Verdict]:
    out = []
    for key, strict in (("at_least", False), ("better", True)):
        dataset, n_patterns = p[key][0], int(p[key][1])
        pinv = _row(table, dataset, n_patterns, "pseudoinverse")
        found = {n: _row(table, dataset, n_patterns, n) for n in VARIANTS}
        found = {n: r for n, r in found.items() if r is not None}
        label = "(a)" if key == "at_least" else "(b)"
        relation = "better than" if strict else "at least as well as"
        claim = (f"{label} {dataset}, P = {n_patterns}, {p['flip']:g} flips: trained weights retrieve held-out cues "
                 f"{relation} the pseudo-inverse rule")
        if pinv is None or not found:
            out.append(Verdict(claim, "not measured (load not in this run)", "a trained set present", False))
            continue
        best = max(found, key=lambda n: found[n]["accuracy"])
        acc = found[best]["accuracy"]
        ok = acc > pinv["accuracy"] if strict else acc >= pinv["accuracy"]
        text = (f"pseudo-inverse {pinv['accuracy']:.3f}; " + ", ".join(f"{n} {r['accuracy']:.3f}"
                                                                      for n, r in found.items()))
        out.append(Verdict(claim, text, f"best trained ({best}) {'>' if strict else '≥'} pseudo-inverse", bool(ok),
                           {"pseudoinverse": pinv["accuracy"], **{n: r["accuracy"] for n, r in found.items()}}))
    rows = _pairs(table)
    above = [(d, n, pinv["accuracy"], den["accuracy"]) for d, n, pinv, den in rows if pinv["accuracy"] < p["level"]]
    text = "; ".join(f"{d} P = {n}: {a:.3f} → {b:.3f}" for d, n, a, b in above) or "no load above capacity"
    out.append(Verdict(f"(c) denoising training beats the pseudo-inverse above its capacity (where its accuracy "
                       f"< {p['level']:g})", text, "denoise accuracy > pseudo-inverse accuracy at every such load",
                       bool(above) and all(b > a for *_, a, b in above)))
    text = "; ".join(f"{d} P = {n}: {pinv['basin']:g} → {den['basin']:g}" for d, n, pinv, den in rows)
    out.append(Verdict("(d) denoising training enlarges the basins (largest flip fraction retrieved at ≥ "
                       f"{p['level']:g})", text or "no denoise run", "denoise basin ≥ pseudo-inverse basin everywhere",
                       bool(rows) and all(den["basin"] >= pinv["basin"] for *_, pinv, den in rows)))
    hebb = [(r, _row(table, r["dataset"], r["P"], "pseudoinverse")) for _, r in
            table[table["weights"] == "denoise_hebbian"].iterrows()]
    out.append(Verdict("(e) denoising from the Hebbian start retrieves held-out cues at least as well as the "
                       "pseudo-inverse rule",
                       "; ".join(f"{r['dataset']} P = {r['P']}: pseudo-inverse {pinv['accuracy']:.3f}, trained "
                                 f"{r['accuracy']:.3f} (stopped by {r['stop_reason']} at step "
                                 f"{int(r['steps_run'])}, kept step {int(r['best_step'])})" for r, pinv in hebb)
                       or "not run",
                       "trained ≥ pseudo-inverse wherever run",
                       bool(hebb) and all(r["accuracy"] >= pinv["accuracy"] for r, pinv in hebb)))
    penalised = table[table["weights"].str.endswith("_stability")]
    plain = table[table["weights"].isin([n[: -len("_stability")] for n in penalised["weights"].unique()])]
    active = steps[steps["weights"].str.endswith("_stability")]["stability_penalty"] if len(steps) else pd.Series()
    out.append(Verdict(
        "(f) the stability penalty makes every stored pattern a Jacobian-stable fixed point of eq. 1",
        (f"min stable fraction {penalised['eq1_stable_fraction'].min():.3f} over {len(penalised)} penalised runs "
         f"(unpenalised: {plain['eq1_stable_fraction'].min():.3f}); the penalty was > 0 at {int((active > 0).sum())} "
         f"of {len(active)} validations (max {active.max():.3g})") if len(penalised) else "not run",
        "stable fraction = 1 everywhere",
        bool(len(penalised)) and bool((penalised["eq1_stable_fraction"] == 1.0).all()),
        {"unpenalised_min_stable_fraction": plain["eq1_stable_fraction"].min() if len(plain) else None}))
    out += _dead_neuron_verdicts(table, steps)
    return out


def _dead_neuron_verdicts(table: pd.DataFrame, steps: pd.DataFrame) -> list[Verdict]:
    claims = ("(g) eq. 4 is inconclusive exactly where neurons die (Prop. 1), at every probed training step",
              "(h) E3 has no flat directions at dead neurons as the weights learn (Prop. 5.3)")
    probed = steps[steps["eq1_stable_points"].notna()] if "eq1_stable_points" in steps else steps.iloc[:0]
    if probed.empty:
        out = [Verdict(c, "no probed training run", "probed steps present", False) for c in claims]
    else:
        stable, matched = int(probed["eq1_stable_points"].sum()), int(probed["eq4_matches_dead"].sum())
        dead, flat = int(probed["eq9_dead_points"].sum()), int(probed["e3_inconclusive_dead_points"].sum())
        share = matched / stable if stable else None
        out = [Verdict(claims[0], f"{matched} of {stable} Jacobian-stable stored fixed points of eq. 1 over "
                                  f"{len(probed)} probed validations", f"≥ {PASS_AT_LEAST:g} agree",
                       share is not None and share >= PASS_AT_LEAST),
               Verdict(claims[1], f"{flat} of {dead} stored fixed points of eq. 9 with dead neurons are "
                                  f"E3-inconclusive over {len(probed)} probed validations (E3-inconclusive at "
                                  f"any point: at most {probed['eq9_energy_inconclusive_fraction'].max():.3f} of a "
                                  f"step's points, "
                                  f"{int(probed['e3_inconclusive_marginal_points'].sum())} of them Jacobian-marginal)",
                       f"≤ {PASS_AT_MOST:g} of the points with dead neurons", dead > 0 and flat <= PASS_AT_MOST * dead)]
    changes = [(d, n, pinv["eq1_dead_fraction"], den["eq1_dead_fraction"]) for d, n, pinv, den in _pairs(table)]
    hebbian = [(d, int(n), _row(table, d, n, "hebbian")["eq1_dead_fraction"], r["eq1_dead_fraction"])
               for d, n, r in ((r["dataset"], r["P"], r) for _, r in
                               table[table["weights"] == "denoise_hebbian"].iterrows())]
    text = "; ".join(f"{d} P = {n}: {a:.3f} → {b:.3f}" for d, n, a, b in changes) or "not run"
    if hebbian:  # not part of the claim: the other start, for the reader
        text += " (from the Hebbian start, not claimed: " + "; ".join(
            f"{d} P = {n}: {a:.3f} → {b:.3f}" for d, n, a, b in hebbian) + ")"
    out.append(Verdict("(i) learning kills neurons: the denoising-trained weights have a larger dead fraction at eq. "
                       "1's stored fixed points than the pseudo-inverse weights they start from", text,
                       "larger at every (data set, P)", bool(changes) and all(b > a for *_, a, b in changes)))
    return out


def print_table(table: pd.DataFrame) -> None:
    columns = ["dataset", "P", "weights", "accuracy", "mean_overlap", "basin", "spurious_rate", "eq1_stable_fraction",
               "eq1_dead_fraction", "eq1_energy_inconclusive_fraction", "eq9_energy_inconclusive_fraction",
               "stop_reason", "best_step"]
    print("\ntraining: held-out retrieval and stability of storage rules and trained weights")
    print(table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda x: f"{x:.3f}"))


@REPRODUCTIONS.register("training")
def run(params: dict, ctx: Context) -> list[Verdict]:
    """Storage rules vs trained weights across loads; stability fractions along training."""
    p = settings(params)
    with cpu_threads(p["cpu_threads"], ctx.device):
        table, steps = sweep(p, ctx)
    ctx.csv("comparison", table)
    ctx.csv("training_steps", steps)
    if "eq1_dead_fraction" in steps:
        probed = steps[steps["eq1_dead_fraction"].notna()]
        ctx.csv("dead_neurons_steps", probed[["dataset", "P", "weights", "step", "val_accuracy", *(
            f"{m}_{k}" for m in ("eq1", "eq9") for k in STABILITY)]])
    print_table(table)
    ctx.figure("comparison", lambda: _draw_comparison(table, p))
    if not steps.empty:
        ctx.figure("training_curves", lambda: _draw_curves(steps))
    if "eq1_dead_fraction" in steps and steps["eq1_dead_fraction"].notna().any():
        ctx.figure("dead_neurons", lambda: _draw_dead_neurons(steps))
    return claim_verdicts(table, steps, p)


def _draw_comparison(table: pd.DataFrame, p: dict):
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(3, len(datasets), figsize=(6.5 * len(datasets), 11), squeeze=False)
    names = list(dict.fromkeys(table["weights"]))
    colors = _colors(names)
    for col, dataset in enumerate(datasets):
        sub = table[table["dataset"] == dataset]
        for name in names:
            rows = sub[sub["weights"] == name].sort_values("P")
            style = "o-" if name in VARIANTS else "s--"
            for ax, key in zip(axes[:, col], ("accuracy", "basin", "eq1_dead_fraction"), strict=True):
                ax.plot(rows["P"], rows[key], style, color=colors[name], ms=5, label=name)
        axes[0, col].axhline(p["level"], color="0.5", ls=":", lw=1)
        axes[0, col].set(title=f"{dataset}: held-out retrieval ({p['flip']:g} flips, cos ≥ {p['threshold']:g})",
                         ylabel="accuracy", ylim=(-0.03, 1.03))
        axes[1, col].set(title=f"{dataset}: basin (largest flip fraction at accuracy ≥ {p['level']:g})",
                         ylabel="flip fraction")
        axes[2, col].set(title=f"{dataset}: dead fraction at the stored fixed points (eq. 1)", ylabel="nullity Λ / N",
                         xlabel=f"stored patterns P (N = {p['n_neurons']})")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Storage rules (dashed) vs trained weights (solid): original model, tanh β = {p['beta']:g}")
    fig.tight_layout()
    return fig


def _draw_curves(steps: pd.DataFrame):
    """Held-out accuracy (solid, left axis) and training loss (dotted, right axis, log) of every trained run."""
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(steps["dataset"]))
    width = max(steps[steps["dataset"] == d]["P"].nunique() for d in datasets)
    fig, axes = plt.subplots(len(datasets), width, figsize=(5.2 * width, 3.9 * len(datasets)), squeeze=False)
    names = list(dict.fromkeys(steps["weights"]))
    colors = _colors(names)
    for row, dataset in enumerate(datasets):
        loads = sorted(steps[steps["dataset"] == dataset]["P"].unique())
        for ax in axes[row, len(loads):]:
            ax.axis("off")
        for ax, n_patterns in zip(axes[row], loads, strict=False):
            group = steps[(steps["dataset"] == dataset) & (steps["P"] == n_patterns)]
            loss_ax = ax.twinx()
            for name, rows in group.groupby("weights", sort=False):
                ax.plot(rows["step"], rows["val_accuracy"], "-", color=colors[name], label=name)
                loss_ax.plot(rows["step"], rows["loss"], ":", color=colors[name])
                kept = rows[rows["best"].astype(bool)].tail(1)
                ax.plot(kept["step"], kept["val_accuracy"], "D", color=colors[name], ms=6, mec="k")
            ax.set(title=f"{dataset}, P = {n_patterns}", xlabel="step", ylabel="held-out accuracy (solid)",
                   ylim=(-0.03, 1.03))
            loss_ax.set(yscale="log", ylabel="training loss (dotted)")
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[name], label=name) for name in names]
    fig.suptitle("Training curves: validation on held-out cues (◆ the kept weights) and the training loss")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(names), fontsize=9)
    return fig


def _draw_dead_neurons(steps: pd.DataFrame):
    import matplotlib.pyplot as plt

    panels = (("eq1_dead_fraction", "dead fraction (nullity Λ / N), eq. 1"),
              ("eq1_energy_inconclusive_fraction", "eq. 4 inconclusive fraction"),
              ("eq9_energy_inconclusive_fraction", "E3 inconclusive fraction (eq. 9)"),
              ("eq1_stable_fraction", "Jacobian-stable fraction, eq. 1"))
    groups = list(steps[steps["eq1_dead_fraction"].notna()].groupby(["dataset", "P"], sort=True))
    fig, axes = plt.subplots(len(groups), len(panels), figsize=(4.6 * len(panels), 3.8 * len(groups)),
                             squeeze=False)
    for row, ((dataset, n_patterns), group) in enumerate(groups):
        for ax, (key, title) in zip(axes[row], panels, strict=True):
            for name, rows in group.groupby("weights", sort=False):
                ax.plot(rows["step"], rows[key], "o-", ms=3, label=name)
            ax.set(title=title, xlabel="step", ylim=(-0.03, 1.03))
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel(f"{dataset}, P = {n_patterns}: fraction")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("What learning does to dead neurons: stored fixed points at every validation of training")
    fig.tight_layout()
    return fig
