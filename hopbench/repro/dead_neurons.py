"""The benchmark's headline table: original (eq. 1, energy eq. 4) vs modified (eq. 9, R = I − WᵀΛ, energy E3)
memories across activations and loads — where neurons die, what each energy certifies, and what the dynamics do.

Memories (N = 100 by default, ±1 random patterns, b = 0, loads α ∈ {0.02, 0.05, 0.1, 0.14}):
- Hebbian W = N⁻¹Σξξᵀ (zero diagonal) with relu, sigmoid (β = 1), tanh (β = 4, the classical case) and smooth
  leaky ReLU — the parameters of conf/activation/*.yaml;
- softmax: the bipartite dense associative memory (identity feature layer, softmax memory layer,
  W = N^{-1/2}[[0, Ξ], [Ξᵀ, 0]]). Its memory β is not the config's 1: at a retrieved state the memory inputs
  are N^{-1/2}Ξᵀ y_f ∈ [−1, 1], so β = 1 leaves the softmax almost uniform and nothing is retrieved (checked:
  accuracy 0 at every load). β = √N is Ramsauer et al.'s β = 1/√d in these units (pattern norm √N), so it is
  the default here (param ``softmax_memory_beta``; null → √N).
Each memory is composed once and run under both models (``with_model``): the same W, patterns, cues and
random starts. Solver: the benchmark's defaults (dopri5, rtol 1e-5, atol 1e-6, converged at ‖ẋ‖∞ < 1e-4,
t_max 200) in float64; stability in float64 at Newton-polished fixed points (engine defaults tol = dead_tol =
1e-6). A point counts as a fixed point when its polished residual is ≤ ``fixed_point_tol`` (1e-8): states where
the flow stalled without reaching a fixed point are excluded from the claims and counted in the table.

Claims:
(a) eq. 4 is inconclusive exactly where neurons die (Prop. 1, eq. 6): over the original model's Jacobian-stable
    stored fixed points, (energy verdict = inconclusive) ⇔ (dead fraction > 0) on ≥ 99 %;
(b) E3 has no flat directions (Prop. 5.3): of the modified model's stored fixed points with dead neurons,
    ≤ 1 % are energy-inconclusive;
(Prop. 4.2) at the original's stable stored fixed points with dead neurons, Λ − ΛWΛ restricted to range(Λ)
    is positive definite on ≥ 99 %;
(c) stability corresponds through y = W u + b: at each original stored fixed point y*, u* = g(y*) is checked
    to be a fixed point of eq. 9 (residual before polishing; then polished) and the modified Jacobian verdict
    at u* must equal the original's at y* on ≥ 99 %;
(c′) the same in the other direction, at the fixed points the modified dynamics reaches (from the stored
    patterns and from ``n_probe`` random ±1 starts), mapped by y* = W u* + b.
The modified Jacobian is J = −(I − WᵀΛ)(I − ΛW) ⪯ 0 (symmetric), so it calls every fixed point with
I − ΛW invertible stable, including saddles of eq. 1: the dynamics reaches those from random starts, which
is what (c′) and the spurious rates measure. The original dynamics selects attractors, so (c) is expected to
hold except where its verdict is fragile.

Also reported: stored, retrieval (flip 5 %, cosine ≥ 0.95) and spurious rates (random ±1 starts), statuses,
stalls, and the fraction of neurons at the ReLU kink (|h| ≤ 1e-9·max(1, ‖h‖∞)), where g is not differentiable
and the Jacobian verdict depends on the rounding of h: Hebbian ReLU memories collapse to y* = 0, where every
neuron sits on the kink. Activities of relu and sigmoid are non-negative, so their cosine with a ±1 pattern is
at most ≈ 1/√2 and retrieval at threshold 0.95 is impossible by construction.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hopbench.analysis.metrics import retrieval, spurious, stability_at_patterns
from hopbench.analysis.stability import JACOBIAN_VERDICTS, StabilityConfig, analyse
from hopbench.app.compose import compose
from hopbench.core.activations import ThresholdLinear
from hopbench.core.data import Flip
from hopbench.core.models import Model
from hopbench.core.system import System, generator
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import SolverConfig, integrate, polish

F64 = torch.float64
MODELS = ("original", "modified")
KINK_TOL = 1e-9
PASS_AT_LEAST, PASS_AT_MOST = 0.99, 0.01
#: heatmaps of the figure: (column of the table, title)
PANELS = (("stable_fraction", "Jacobian-stable fraction"), ("energy_inconclusive_fraction", "energy inconclusive"),
          ("dead_fraction", "mean dead fraction (nullity Λ / N)"), ("retrieval_accuracy", "retrieval accuracy"),
          ("spurious_rate", "spurious rate (random starts)"),
          ("correspondence_agreement", "Jacobian verdict = other model's"))


def memory_kwargs(label: str, params: dict, n_neurons: int) -> dict:
    """compose() arguments of one memory: Hebbian with an element-wise activation, or softmax (bipartite)."""
    if label == "softmax":
        beta = params.get("softmax_memory_beta")
        beta = math.sqrt(n_neurons) if beta is None else float(beta)
        return {"activation": "identity", "weights": "bipartite", "weights_params": {"memory_beta": beta}}
    return {"activation": label, "activation_params": dict(params.get("activation_params", {}).get(label, {})),
            "weights": "hebbian"}


def build_pair(label: str, params: dict, load: float, seed: int, device: torch.device) -> dict[str, System]:
    """The original system and the modified one on the same patterns and weights (natural strategies)."""
    n = int(params["n_neurons"])
    base = compose(model="original", n_neurons=n, load=load, seed=seed, device=str(device), dtype="float64",
                   dataset="random_binary", **memory_kwargs(label, params, n))
    return {"original": base, "modified": base.with_model("modified", strategy="auto", energy="auto")}


def kink_fraction(model: Model, x: Tensor) -> Tensor:
    """Fraction of neurons (B,) whose pre-activation sits on a ReLU kink (0 for smooth activations)."""
    lag = model.net.lagrangian
    if not isinstance(lag, ThresholdLinear):
        return torch.zeros(x.shape[0], dtype=F64)
    h = model.preactivation(x) - lag.threshold
    scale = h.abs().amax(-1, keepdim=True).clamp_min(1.0)
    return (h.abs() <= KINK_TOL * scale).double().mean(-1).cpu()


def to_modified(original: Model, y: Tensor) -> Tensor:
    """u* = g(y*): the modified model's steady state for an original steady state y*."""
    return original.net.lagrangian.activation(y)


def to_original(modified: Model, u: Tensor) -> Tensor:
    """y* = W u* + b: the original model's steady state for a modified steady state u*."""
    return modified.preactivation(u)


def correspondence(source: Model, target: Model, x: Tensor, verdicts: Tensor, fp_tol: float,
                   config: StabilityConfig) -> pd.DataFrame:
    """Map fixed points x (B, N) of ``source`` to ``target`` (both float64), polish there and compare the
    Jacobian verdicts. ``agree`` is False where the mapped point is not a fixed point of the target."""
    mapped = to_modified(source, x) if target.state == "u" else to_original(source, x)
    with torch.no_grad():
        before = target.residual(mapped).abs().amax(-1)
    polished = polish(target, mapped)
    table = analyse(target, polished.x, config)
    fixed = (polished.residual <= fp_tol).cpu()
    target_verdict = table["jacobian_verdict"].cpu()
    return pd.DataFrame({
        "source_verdict": [JACOBIAN_VERDICTS[i] for i in verdicts.tolist()],
        "target_verdict": [JACOBIAN_VERDICTS[i] if ok else "not a fixed point"
                           for i, ok in zip(target_verdict.tolist(), fixed.tolist(), strict=True)],
        "residual_before_polish": before.cpu().numpy(), "polish_residual": polished.residual.cpu().numpy(),
        "polish_shift": polished.shift.cpu().numpy(), "target_fixed_point": fixed.numpy(),
        "source_at_kink": kink_fraction(source, x).numpy(), "target_max_real": table["max_real"].cpu().numpy(),
        "agree": (fixed & (target_verdict == verdicts.cpu())).numpy(),
    })


def probe_fixed_points(system: System, model64: Model, solver: SolverConfig, n: int, fp_tol: float
                       ) -> tuple[Tensor, Tensor]:
    """Fixed points (K, N) the model reaches from n random starts (converged, polished to ≤ fp_tol), and
    their Jacobian verdicts (K,)."""
    states = system.data.sample(n, generator(system.seed, "dead-neurons-probe"))
    x0 = model64.initial_state(system.net.embed(states.to(system.device, F64)))
    out = integrate(model64, x0, solver)
    done = out.status == 0
    polished = polish(model64, out.x[done])
    keep = polished.residual <= fp_tol
    x = polished.x[keep]
    return x, analyse(model64, x, StabilityConfig())["jacobian_verdict"]


def measure(pair: dict[str, System], params: dict, solver: SolverConfig, config: StabilityConfig
            ) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Summary rows (one per model), per-point stability rows and correspondence rows for one memory."""
    fp_tol, cue = float(params["fixed_point_tol"]), Flip(level=float(params["cue_level"]))
    rows, points, fixed = [], [], {}
    for name, system in pair.items():
        model = system.model
        P = system.data.n_patterns
        st = stability_at_patterns(system, model, solver, config, max_points=P, threshold=params["threshold"])
        table = st.tables["stability"].copy()
        xs = st.extras["fixed_points"]
        m64 = model.to(dtype=F64)
        finite = torch.isfinite(xs).all(-1)
        table.insert(0, "model", name)
        table["is_fixed_point"] = table["polish_residual"].fillna(np.inf).to_numpy() <= fp_tol
        table["at_kink"] = np.nan
        table.loc[finite.numpy(), "at_kink"] = kink_fraction(m64, xs[finite]).numpy()
        points.append(table)
        fixed[name] = (m64, xs[torch.as_tensor(table["is_fixed_point"].to_numpy(copy=True))],
                       torch.tensor([JACOBIAN_VERDICTS.index(v) for v in table["jacobian_verdict"][
                           table["is_fixed_point"]]], dtype=torch.long))
        ret = retrieval(system, model, cue, solver, n_cues=int(params["n_cues"]), threshold=params["threshold"])
        spu = spurious(system, model, solver, n_states=int(params["n_states"]), threshold=params["threshold"])
        rows.append(_summary_row(name, system, st.scalars, table, ret.scalars, spu.scalars))
    orig64, y_fixed, y_verdicts = fixed["original"]
    mod64, u_fixed, u_verdicts = fixed["modified"]
    forward = correspondence(orig64, mod64, y_fixed, y_verdicts, fp_tol, config)
    forward.insert(0, "direction", "(c) original → modified, stored patterns")
    u_probe, probe_verdicts = probe_fixed_points(pair["modified"], mod64, solver, int(params["n_probe"]), fp_tol)
    backward = correspondence(mod64, orig64, torch.cat([u_fixed, u_probe]), torch.cat([u_verdicts, probe_verdicts]),
                              fp_tol, config)
    backward.insert(0, "direction", ["(c′) modified → original, stored patterns"] * len(u_fixed)
                    + ["(c′) modified → original, random starts"] * len(u_probe))
    rows[0]["correspondence_agreement"] = float(forward["agree"].mean()) if len(forward) else np.nan
    rows[1]["correspondence_agreement"] = float(backward["agree"].mean()) if len(backward) else np.nan
    rows[1]["probe_fixed_points"] = len(u_probe)
    return rows, pd.concat(points, ignore_index=True), pd.concat([forward, backward], ignore_index=True)


def _summary_row(name: str, system: System, stab: dict, table: pd.DataFrame, ret: dict, spu: dict) -> dict:
    fp = table["is_fixed_point"]
    row = {"model": name, "strategy": system.model.strategy.name, "energy": system.model.energy.name,
           "n_patterns": system.data.n_patterns, "n_neurons_total": system.net.n,
           **{k: stab.get(k) for k in ("stable_fraction", "marginal_fraction", "unstable_fraction",
                                        "energy_certified_fraction", "energy_inconclusive_fraction",
                                        "energy_unstable_fraction", "range_certified_fraction",
                                        "condition12_fraction", "energy_jacobian_agreement", "dead_fraction",
                                        "stored_fraction", "polish_failed", "unresolved_fixed_points")},
           "fixed_point_fraction": float(fp.mean()), "points_with_dead_neurons": float((table["dead_fraction"] > 0)
                                                                                        .mean()),
           "at_kink_fraction": float(table["at_kink"].mean()),
           **{k: ret[k] for k in ("retrieval_accuracy", "nearest_accuracy", "mean_overlap", "retrieval_stall_fraction",
                                  "converged_fraction")},
           **{f"retrieval_{k}": v for k, v in ret["status_counts"].items()},
           **{k: spu[k] for k in ("spurious_rate", "n_spurious_attractors", "random_stall_fraction",
                                  "random_trivial_fraction", "random_max_time_fraction", "random_diverged_fraction")}}
    return row


def claim_fractions(points: pd.DataFrame, corr: pd.DataFrame) -> dict[str, tuple[float | None, int]]:
    """The measured fraction and its denominator for each claim (a), (b), (Prop. 4.2), (c), (c′)."""
    orig = points[(points["model"] == "original") & points["is_fixed_point"]]
    stable = orig[orig["jacobian_verdict"] == "stable"]
    dead = stable["dead_fraction"] > 0
    a = (stable["energy_verdict"] == "inconclusive") == dead
    mod = points[(points["model"] == "modified") & points["is_fixed_point"]]
    mod_dead = mod[mod["dead_fraction"] > 0]
    b = mod_dead["energy_verdict"] == "inconclusive"
    rng = stable.loc[dead, "range_certified"].astype(bool)
    c = corr.loc[corr["direction"].str.startswith("(c) "), "agree"]
    c2 = corr.loc[corr["direction"].str.startswith("(c′)"), "agree"]

    def frac(s: pd.Series) -> tuple[float | None, int]:
        return (float(s.mean()) if len(s) else None), len(s)

    return {"a": frac(a), "b": frac(b), "range": frac(rng), "c": frac(c), "c2": frac(c2)}


def _by_activation(frame: pd.DataFrame, column: str) -> dict:
    return {str(k): round(float(v), 4) for k, v in frame.groupby("activation")[column].mean().items()}


def verdicts_from(points: pd.DataFrame, corr: pd.DataFrame) -> list[Verdict]:
    """Verdicts (a), (b), Prop. 4.2, (c), (c′) pooled over activations and loads (details per activation)."""
    f = claim_fractions(points, corr)
    orig = points[(points["model"] == "original") & points["is_fixed_point"]]
    stable = orig[orig["jacobian_verdict"] == "stable"].assign(
        match=lambda d: (d["energy_verdict"] == "inconclusive") == (d["dead_fraction"] > 0))
    mod = points[(points["model"] == "modified") & points["is_fixed_point"] & (points["dead_fraction"] > 0)]
    mod = mod.assign(inconclusive=mod["energy_verdict"] == "inconclusive")
    fwd, bwd = corr[corr["direction"].str.startswith("(c) ")], corr[corr["direction"].str.startswith("(c′)")]

    def at_least(key: str) -> bool:
        return f[key][0] is not None and f[key][0] >= PASS_AT_LEAST

    excluded = int((~points["is_fixed_point"]).sum())
    return [
        Verdict("(a) eq. 4 is energy-inconclusive exactly where neurons die: at the original's Jacobian-stable "
                "stored fixed points, inconclusive ⇔ dead fraction > 0", f["a"][0],
                f"fraction ≥ {PASS_AT_LEAST} (n = {f['a'][1]})", at_least("a"),
                {"by_activation": _by_activation(stable, "match") if len(stable) else {},
                 "points_not_fixed_excluded_all_models": excluded}),
        Verdict("(b) E3 is not flat at dead neurons: modified stored fixed points with dead neurons that are "
                "energy-inconclusive", f["b"][0], f"fraction ≤ {PASS_AT_MOST} (n = {f['b'][1]})",
                f["b"][0] is not None and f["b"][0] <= PASS_AT_MOST,
                {"by_activation": _by_activation(mod, "inconclusive") if len(mod) else {}}),
        Verdict("Prop. 4.2: at the original's stable stored fixed points with dead neurons, Λ − ΛWΛ is positive "
                "definite on range(Λ)", f["range"][0], f"fraction ≥ {PASS_AT_LEAST} (n = {f['range'][1]})",
                at_least("range")),
        Verdict("(c) stability corresponds through u* = g(y*): modified Jacobian verdict at u* = original's at "
                "each original stored fixed point y*", f["c"][0], f"fraction ≥ {PASS_AT_LEAST} (n = {f['c'][1]})",
                at_least("c"), _correspondence_details(fwd)),
        Verdict("(c′) the same from the modified side: original Jacobian verdict at y* = W u* + b = modified's at "
                "fixed points the modified dynamics reaches (stored patterns and random starts)", f["c2"][0],
                f"fraction ≥ {PASS_AT_LEAST} (n = {f['c2'][1]})", at_least("c2"), _correspondence_details(bwd)),
    ]


def _correspondence_details(frame: pd.DataFrame) -> dict:
    if not len(frame):
        return {}
    off_kink = frame[frame["source_at_kink"] == 0]
    pairs = frame.groupby(["source_verdict", "target_verdict"]).size()
    return {"by_activation": _by_activation(frame, "agree"),
            "verdict_pairs_source_to_target": {f"{s} → {t}": int(n) for (s, t), n in pairs.items()},
            "max_residual_before_polish": float(frame["residual_before_polish"].max()),
            "mapped_not_fixed": int((~frame["target_fixed_point"]).sum()),
            "agreement_off_relu_kink": float(off_kink["agree"].mean()) if len(off_kink) else None}


@REPRODUCTIONS.register("dead_neurons")
def run(params: dict, ctx: Context) -> list[Verdict]:
    solver = SolverConfig(**params.get("solver", {}))
    config = StabilityConfig(tol=float(params["stability_tol"]), dead_tol=float(params["dead_tol"]))
    rows, points, corr = [], [], []
    with cpu_threads(int(params.get("cpu_threads", 1)), ctx.device):
        for label in params["activations"]:
            for load in params["loads"]:
                pair = build_pair(label, params, float(load), ctx.seed, ctx.device)
                r, p, c = measure(pair, params, solver, config)
                keys = {"activation": label, "load": float(load)}
                rows += [{**keys, **row} for row in r]
                points.append(p.assign(**keys))
                corr.append(c.assign(**keys))
    table = pd.DataFrame(rows)
    points_frame, corr_frame = pd.concat(points, ignore_index=True), pd.concat(corr, ignore_index=True)
    ctx.csv("table", table)
    ctx.csv("fixed_points", points_frame)
    ctx.csv("correspondence", corr_frame)
    verdicts = verdicts_from(points_frame, corr_frame)
    ctx.figure("dead_neurons", lambda: _draw(table, params))
    return verdicts


def _draw(table: pd.DataFrame, params: dict):
    import matplotlib.pyplot as plt

    activations, loads = list(params["activations"]), [float(a) for a in params["loads"]]
    fig, axes = plt.subplots(2, len(PANELS), figsize=(4.1 * len(PANELS), 8.2), constrained_layout=True)
    titles = {"original": "original (eq. 1), energy eq. 4", "modified": "modified (eq. 9, R = I − WᵀΛ), energy E3"}
    image = None
    for i, model in enumerate(MODELS):
        sub = table[table["model"] == model]
        for j, (column, title) in enumerate(PANELS):
            grid = np.full((len(activations), len(loads)), np.nan)
            for _, row in sub.iterrows():
                value = row.get(column)
                if value is not None and not pd.isna(value):
                    grid[activations.index(row["activation"]), loads.index(row["load"])] = float(value)
            ax = axes[i, j]
            image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (r, c), v in np.ndenumerate(grid):
                text = "–" if np.isnan(v) else f"{v:.2f}"
                ax.text(c, r, text, ha="center", va="center", fontsize=9,
                        color="black" if not np.isnan(v) and v > 0.6 else "white")
            ax.set_xticks(range(len(loads)), [f"{a:g}" for a in loads])
            ax.set_yticks(range(len(activations)), activations if j == 0 else [""] * len(activations))
            ax.set_xlabel("load α = P/N")
            ax.set_title(f"{title}\n{titles[model]}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="fraction")
    fig.suptitle(f"Dead neurons: original vs modified on the same Hebbian / bipartite (softmax) memories, "
                 f"N = {params['n_neurons']}, ±1 patterns ('–': no converged state to measure)", fontsize=12)
    return fig
