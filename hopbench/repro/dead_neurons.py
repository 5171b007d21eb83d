"""The benchmark's headline table: original (eq. 1, energy eq. 4) vs modified (eq. 9, R = I − WᵀΛ, energy E3)
memories across activations and loads — where neurons die, what each energy certifies, and what the dynamics do.

A row is only meaningful if its memory works, so every activation gets a storage set-up in which the original
model retrieves its patterns (``params.memories``; N = 100 by default, loads α ∈ {0.02, 0.05, 0.1, 0.14}):
- relu: {0,1} patterns with exactly 0.3N ones, projection rule with global inhibition W = 1.2 XX⁺ − 11ᵀ/N and
  b = 0.1 (the memory of repro-prop4): each pattern is an exact fixed point whose silent neurons sit at
  y = −0.2, strictly dead (Λ = 0), and whose active ones at y = 1 — no neuron on the kink. (A Hebbian ±1
  ReLU memory with b = 0 collapses to y* = 0, every neuron on the kink, and retrieves nothing.)
- sigmoid (β = 1): {0,1} patterns (coding level 0.5), Hebbian W = 40·(2ξ − 1)(2ξ − 1)ᵀ/N, b = 0, so the
  stored pre-activations are ≈ ±20 and the neurons saturate: Λ = g(1 − g) ≈ 2e-9, dead in the sense of
  Example 3 (below ``dead_tol``). (With ±1 patterns the cosine of a sigmoid activity with the pattern is at
  most ≈ 1/√2: retrieval at 0.95 is impossible by construction.)
- tanh (β = 4): the classical ±1 Hebbian memory, W = N⁻¹Σξξᵀ with zero diagonal; saturated neurons appear
  above α ≈ 0.1.
- smooth leaky ReLU (Example 7's activation; slope between 0.153 and 1.097, so no neuron is ever dead):
  graded log-normal patterns (mean 1, CV 1), graded projection rule W = (g⁻¹(X) − b1ᵀ)X⁺ with b = 1, cues with
  Gaussian noise of one pattern standard deviation (cue cosine ≈ 0.8). Checked before the run: with ±1
  patterns every stored point of this activation is unstable (the slopes at g⁻¹(±1) make the other
  patterns' directions grow), and a Hebbian ±1 memory decays to a point that is no pattern.
- softmax: the bipartite dense associative memory (identity feature layer, softmax memory layer,
  W = N^{-1/2}[[0, Ξ], [Ξᵀ, 0]], ±1 patterns) with memory β = √N, Ramsauer et al.'s β = 1/√d in these units
  (β = 1 leaves the softmax almost uniform and retrieves nothing). Its dead "neuron" is the shift invariance
  of the softmax (Example 4): one dead direction per state.
A row (activation, load, seed) *works* when the original model retrieves ≥ ``works_at`` = 0.9 of its cues
(§5.1: cosine ≥ 0.95 with the target; cues flip 5 % of the bits unless the set-up says otherwise); rows that
do not work are listed in table.csv with the reason and left out of every claim.

Each memory is composed once and run under both models (``with_model``): the same W, patterns, cues and
random starts. Solver: the benchmark's defaults (dopri5, rtol 1e-5, atol 1e-6, converged at ‖ẋ‖∞ < 1e-4,
t_max 200) in float64; stability in float64 at Newton-polished fixed points (engine defaults tol = dead_tol =
1e-6). A point counts as a fixed point when its polished residual is ≤ ``fixed_point_tol`` (1e-8): states where
the flow stalled without reaching a fixed point are excluded from the claims and counted in the table.

ReLU's kink. g(h) = [h]₊ is not differentiable at h = 0; the engine uses the one-sided convention
g'(0) = 0 (Λ = 1[h > 0], the left derivative: a neuron exactly on the kink counts as dead). A fixed point with
a neuron at the kink (|h| ≤ 1e-9·max(1, ‖h‖∞)) has a Jacobian verdict that depends on this convention, so
such points are counted separately (``at_kink``) and left out of the claims.

Claims (over the fixed points of working rows, off the kink):
(a) eq. 4 is inconclusive exactly where neurons die (Prop. 1, eq. 6): over the original model's Jacobian-stable
    stored fixed points, (energy verdict = inconclusive) ⇔ (dead fraction > 0) on ≥ 99 %; the points with dead
    neurons are the informative ones (for symmetric W and Λ ≻ 0, "certified ⇔ stable" is an identity), so the
    claim is vacuous when there are none;
(b) E3 has no flat directions (Prop. 5.3): of the modified model's stored fixed points with dead neurons,
    ≤ 1 % are energy-inconclusive;
(Prop. 4.2) at the original's stable stored fixed points with dead neurons, Λ − ΛWΛ restricted to range(Λ)
    is positive definite on ≥ 99 %;
(c) stability corresponds through y = W u + b: at each original stored fixed point y*, u* = g(y*) is checked
    to be a fixed point of eq. 9 (residual before polishing; then polished) and the modified Jacobian verdict
    at u* must equal the original's at y* on ≥ 99 %;
(c′) the same in the other direction, at the fixed points the modified dynamics reaches (from the stored
    patterns and from ``n_probe`` random starts), mapped by y* = W u* + b.
The modified Jacobian is J = −(I − WᵀΛ)(I − ΛW) ⪯ 0 (symmetric), so it calls every fixed point with
I − ΛW invertible stable, including saddles of eq. 1: the dynamics reaches those from random starts, which
is what (c′) and the spurious rates measure. The original dynamics selects attractors, so (c) is expected to
hold except where its verdict is fragile.

Also reported: stored, retrieval and spurious rates (random starts drawn like the patterns), statuses,
stalls, the fraction of fixed points at the ReLU kink, and per row whether the memory works.
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
from hopbench.core.data import CUES
from hopbench.core.models import Model
from hopbench.core.system import System, generator
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import SolverConfig, integrate, polish

F64 = torch.float64
MODELS = ("original", "modified")
KINK_TOL = 1e-9
PASS_AT_LEAST, PASS_AT_MOST = 0.99, 0.01
#: compose() arguments a memory set-up may give (the rest of a set-up: ``cue``)
COMPOSE_KEYS = ("activation", "activation_params", "weights", "weights_params", "dataset", "dataset_params", "bias")
#: heatmaps of the figure: (column of the table, title)
PANELS = (("stable_fraction", "Jacobian-stable fraction"), ("energy_inconclusive_fraction", "energy inconclusive"),
          ("dead_fraction", "mean dead fraction (nullity Λ / N)"), ("retrieval_accuracy", "retrieval accuracy"),
          ("spurious_rate", "spurious rate (random starts)"),
          ("correspondence_agreement", "Jacobian verdict = other model's"))


def memory_setup(label: str, params: dict) -> dict:
    """The storage set-up of memory ``label``: compose() arguments and the cue (name, params)."""
    from hopbench.errors import ConfigError

    memories = params.get("memories", {})
    if label not in memories:
        raise ConfigError("task.params.activations", label, "no storage set-up in task.params.memories",
                          allowed=sorted(memories))
    spec = dict(memories[label])
    unknown = set(spec) - set(COMPOSE_KEYS) - {"cue"}
    if unknown:
        raise ConfigError(f"task.params.memories.{label}", sorted(unknown), "unknown keys",
                          allowed=[*COMPOSE_KEYS, "cue"])
    return spec


def memory_kwargs(label: str, params: dict, n_neurons: int) -> dict:
    """compose() arguments of memory ``label``; a bipartite memory's β left null becomes √N (Ramsauer's β)."""
    spec = memory_setup(label, params)
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec.items() if k in COMPOSE_KEYS}
    if kwargs.get("weights") == "bipartite":
        wp = dict(kwargs.get("weights_params") or {})
        if wp.get("memory_beta") is None:
            wp["memory_beta"] = math.sqrt(n_neurons)
        kwargs["weights_params"] = wp
    return kwargs


def memory_cue(label: str, params: dict) -> tuple[str, dict]:
    """The retrieval cue of memory ``label`` (default: flip ``cue_level`` of the bits)."""
    cue = dict(memory_setup(label, params).get("cue") or {"name": "flip", "level": float(params["cue_level"])})
    return str(cue.pop("name")), cue


def build_pair(label: str, params: dict, load: float, seed: int, device: torch.device) -> dict[str, System]:
    """The original system and the modified one on the same patterns and weights (natural strategies)."""
    n = int(params["n_neurons"])
    base = compose(model="original", n_neurons=n, load=load, seed=seed, device=str(device), dtype="float64",
                   **memory_kwargs(label, params, n))
    return {"original": base, "modified": base.with_model("modified", strategy="auto", energy="auto")}


def kink_fraction(model: Model, x: Tensor) -> Tensor:
    """Fraction of neurons (B,) whose pre-activation sits on a ReLU kink (0 for smooth activations)."""
    lag = model.net.lagrangian
    if not isinstance(lag, ThresholdLinear):
        return torch.zeros(x.shape[0], dtype=F64)
    h = model.preactivation(x) - lag.threshold
    scale = h.abs().amax(-1, keepdim=True).clamp_min(1.0)
    return (h.abs() <= KINK_TOL * scale).sum(-1).cpu().double() / h.shape[-1]  # on the CPU: the same on every device


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
        "source_kink_fraction": kink_fraction(source, x).numpy(),
        "target_kink_fraction": kink_fraction(target, polished.x).numpy(),
        "target_max_real": table["max_real"].cpu().numpy(),
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


def measure(pair: dict[str, System], params: dict, solver: SolverConfig, config: StabilityConfig,
            cue: tuple[str, dict]) -> tuple[list[dict], pd.DataFrame, pd.DataFrame]:
    """Summary rows (one per model), per-point stability rows and correspondence rows for one memory."""
    fp_tol = float(params["fixed_point_tol"])
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
        table["kink_fraction"] = np.nan
        table.loc[finite.cpu().numpy(), "kink_fraction"] = kink_fraction(m64, xs[finite]).numpy()
        table["at_kink"] = table["kink_fraction"].fillna(0).to_numpy() > 0
        points.append(table)
        fixed[name] = (m64, xs[torch.as_tensor(table["is_fixed_point"].to_numpy(copy=True))],
                       torch.tensor([JACOBIAN_VERDICTS.index(v) for v in table["jacobian_verdict"][
                           table["is_fixed_point"]]], dtype=torch.long))
        ret = retrieval(system, model, CUES.build(*cue), solver, n_cues=int(params["n_cues"]),
                        threshold=params["threshold"])
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
           "points_at_kink": float(table["at_kink"].mean()),
           **{k: ret[k] for k in ("retrieval_accuracy", "nearest_accuracy", "mean_overlap", "retrieval_stall_fraction",
                                  "converged_fraction")},
           **{f"retrieval_{k}": v for k, v in ret["status_counts"].items()},
           **{k: spu[k] for k in ("spurious_rate", "n_spurious_attractors", "random_stall_fraction",
                                  "random_trivial_fraction", "random_max_time_fraction", "random_diverged_fraction")}}
    return row


def claim_sets(points: pd.DataFrame, corr: pd.DataFrame) -> dict[str, pd.Series]:
    """Per claim, one boolean per point (True: the point agrees with the claim), over working rows off the kink:
    (a), (a) restricted to points with dead neurons, (b), Prop. 4.2 (``range``), (c), (c′)."""
    use = points[points["works"] & points["is_fixed_point"] & ~points["at_kink"]]
    orig, mod = use[use["model"] == "original"], use[use["model"] == "modified"]
    stable = orig[orig["jacobian_verdict"] == "stable"]
    dead = stable["dead_fraction"] > 0
    corr = corr[corr["works"] & (corr["source_kink_fraction"] == 0) & (corr["target_kink_fraction"] == 0)]
    return {"a": (stable["energy_verdict"] == "inconclusive") == dead,
            "a_dead": stable.loc[dead, "energy_verdict"] == "inconclusive",
            "b": mod.loc[mod["dead_fraction"] > 0, "energy_verdict"] != "inconclusive",
            "range": stable.loc[dead, "range_certified"].astype(bool),
            "c": corr.loc[corr["direction"].str.startswith("(c) "), "agree"].astype(bool),
            "c2": corr.loc[corr["direction"].str.startswith("(c′)"), "agree"].astype(bool)}


def _by_activation(points: pd.DataFrame, flags: pd.Series) -> dict:
    """Fraction of True and count per activation of the points behind ``flags`` (index-aligned)."""
    if not len(flags):
        return {}
    frame = pd.DataFrame({"activation": points.loc[flags.index, "activation"], "ok": flags.astype(float)})
    return {str(k): {"fraction": round(float(g["ok"].mean()), 4), "n": len(g)}
            for k, g in frame.groupby("activation", sort=False)}


def _fraction(flags: pd.Series) -> float | None:
    return float(flags.mean()) if len(flags) else None


def verdicts_from(points: pd.DataFrame, corr: pd.DataFrame) -> list[Verdict]:
    """Verdicts (a), (b), Prop. 4.2, (c), (c′) pooled over the working rows (details per activation)."""
    sets = claim_sets(points, corr)
    excluded = {"points_in_rows_whose_memory_fails": int((~points["works"]).sum()),
                "points_not_fixed_excluded": int((points["works"] & ~points["is_fixed_point"]).sum()),
                "points_at_relu_kink_excluded": int((points["works"] & points["at_kink"]).sum()),
                "kink_convention": "g'(0) = 0 (left derivative): a neuron on the kink counts as dead"}

    def at_least(key: str, claim: str, extra: dict | None = None, *, base: pd.DataFrame = points) -> Verdict:
        flags = sets[key]
        value = _fraction(flags)
        return Verdict(claim, value, f"fraction ≥ {PASS_AT_LEAST} (n = {len(flags)})",
                       value is not None and value >= PASS_AT_LEAST,
                       {"by_activation": _by_activation(base, flags), **(extra or {})}, vacuous=not len(flags))

    a_dead = sets["a_dead"]
    b = sets["b"]
    b_value = _fraction(~b) if len(b) else None
    fwd = corr[corr["works"] & corr["direction"].str.startswith("(c) ")]
    bwd = corr[corr["works"] & corr["direction"].str.startswith("(c′)")]
    return [
        at_least("a", "(a) eq. 4 is energy-inconclusive exactly where neurons die: at the original's Jacobian-stable "
                 "stored fixed points, inconclusive ⇔ dead fraction > 0",
                 {"points_with_dead_neurons": len(a_dead),
                  "inconclusive_among_them": _fraction(a_dead), **excluded}),
        Verdict("(b) E3 is not flat at dead neurons: modified stored fixed points with dead neurons that are "
                "energy-inconclusive", b_value, f"fraction ≤ {PASS_AT_MOST} (n = {len(b)})",
                b_value is not None and b_value <= PASS_AT_MOST,
                {"by_activation_not_inconclusive": _by_activation(points, b)}, vacuous=not len(b)),
        at_least("range", "Prop. 4.2: at the original's stable stored fixed points with dead neurons, Λ − ΛWΛ is "
                 "positive definite on range(Λ)"),
        at_least("c", "(c) stability corresponds through u* = g(y*): modified Jacobian verdict at u* = original's at "
                 "each original stored fixed point y*", _correspondence_details(fwd), base=corr),
        at_least("c2", "(c′) the same from the modified side: original Jacobian verdict at y* = W u* + b = "
                 "modified's at fixed points the modified dynamics reaches (stored patterns and random starts)",
                 _correspondence_details(bwd), base=corr),
    ]


def _correspondence_details(frame: pd.DataFrame) -> dict:
    if not len(frame):
        return {}
    pairs = frame.groupby(["source_verdict", "target_verdict"]).size()
    kink = (frame["source_kink_fraction"] > 0) | (frame["target_kink_fraction"] > 0)
    return {"verdict_pairs_source_to_target": {f"{s} → {t}": int(n) for (s, t), n in pairs.items()},
            "max_residual_before_polish": float(frame["residual_before_polish"].max()),
            "mapped_not_fixed": int((~frame["target_fixed_point"]).sum()),
            "points_at_relu_kink_excluded": int(kink.sum()),
            "agreement_at_relu_kink": _fraction(frame.loc[kink, "agree"].astype(bool))}


def works(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """Per (activation, load, seed): does the original model retrieve ≥ ``level`` of its cues? With the reason."""
    orig = table[table["model"] == "original"]
    rows = []
    for _, r in orig.iterrows():
        ok = r["retrieval_accuracy"] >= level
        note = "" if ok else (f"the original retrieves {r['retrieval_accuracy']:.2f} of its cues < {level:g} "
                              "(cosine ≥ threshold with the target)")
        rows.append({"activation": r["activation"], "load": r["load"], "seed": r["seed"], "works": bool(ok),
                     "memory_note": note})
    return pd.DataFrame(rows)


@REPRODUCTIONS.register("dead_neurons")
def run(params: dict, ctx: Context) -> list[Verdict]:
    solver = SolverConfig(**params.get("solver", {}))
    config = StabilityConfig(tol=float(params["stability_tol"]), dead_tol=float(params["dead_tol"]))
    seeds = [ctx.seed + k for k in range(int(params.get("n_seeds", 1)))]
    rows, points, corr = [], [], []
    with cpu_threads(int(params.get("cpu_threads", 1)), ctx.device):
        for label in params["activations"]:
            cue = memory_cue(label, params)
            for load in params["loads"]:
                for seed in seeds:
                    pair = build_pair(label, params, float(load), seed, ctx.device)
                    r, p, c = measure(pair, params, solver, config, cue)
                    keys = {"activation": label, "load": float(load), "seed": seed}
                    rows += [{**keys, **row} for row in r]
                    points.append(p.assign(**keys))
                    corr.append(c.assign(**keys))
    table = pd.DataFrame(rows)
    status = works(table, float(params.get("works_at", 0.9)))
    table = table.merge(status, on=["activation", "load", "seed"], how="left")
    points_frame = pd.concat(points, ignore_index=True).merge(status[["activation", "load", "seed", "works"]],
                                                               on=["activation", "load", "seed"], how="left")
    corr_frame = pd.concat(corr, ignore_index=True).merge(status[["activation", "load", "seed", "works"]],
                                                          on=["activation", "load", "seed"], how="left")
    ctx.csv("table", table)
    ctx.csv("fixed_points", points_frame)
    ctx.csv("correspondence", corr_frame)
    verdicts = verdicts_from(points_frame, corr_frame)
    verdicts.insert(0, _setup_verdict(table, params, seeds))
    ctx.figure("dead_neurons", lambda: _draw(table, params))
    return verdicts


def _setup_verdict(table: pd.DataFrame, params: dict, seeds: list[int]) -> Verdict:
    """Every activation's memory works at the lowest load (the precondition of the table, docs/design.md §5.3)."""
    lowest = min(float(a) for a in params["loads"])
    orig = table[(table["model"] == "original") & (table["load"] == lowest)]
    by = {str(k): round(float(v), 4) for k, v in orig.groupby("activation", sort=False)["retrieval_accuracy"].min()
          .items()}
    failing = [k for k, v in by.items() if v < float(params.get("works_at", 0.9))]
    working_rows = int(table.loc[table["model"] == "original", "works"].sum())
    return Verdict(f"set-up: every activation's memory works at the lowest load α = {lowest:g} (original model)",
                   f"min retrieval over seeds per activation: {by}; {working_rows} of "
                   f"{int((table['model'] == 'original').sum())} (activation, load, seed) rows work",
                   f"retrieval ≥ {params.get('works_at', 0.9)} for every activation (cues: "
                   f"{', '.join(f'{k}: {memory_cue(k, params)[0]} {memory_cue(k, params)[1]}' for k in by)})",
                   not failing, {"failing": failing, "seeds": seeds,
                                 "rows_not_working": table.loc[(table["model"] == "original") & ~table["works"],
                                                               ["activation", "load", "seed", "memory_note"]]
                                 .to_dict("records")})


def _draw(table: pd.DataFrame, params: dict):
    import matplotlib.pyplot as plt

    activations, loads = list(params["activations"]), [float(a) for a in params["loads"]]
    fig, axes = plt.subplots(2, len(PANELS), figsize=(4.1 * len(PANELS), 8.2), constrained_layout=True)
    titles = {"original": "original (eq. 1), energy eq. 4", "modified": "modified (eq. 9, R = I − WᵀΛ), energy E3"}
    numeric = [c for c, _ in PANELS] + ["works"]
    mean = table.assign(works=table["works"].astype(float)).groupby(["model", "activation", "load"], sort=False)[
        numeric].mean().reset_index()
    image = None
    for i, model in enumerate(MODELS):
        sub = mean[mean["model"] == model]
        for j, (column, title) in enumerate(PANELS):
            grid = np.full((len(activations), len(loads)), np.nan)
            ok = np.ones_like(grid, dtype=bool)
            for _, row in sub.iterrows():
                r, c = activations.index(row["activation"]), loads.index(row["load"])
                ok[r, c] = row["works"] == 1.0
                if not pd.isna(row[column]):
                    grid[r, c] = float(row[column])
            ax = axes[i, j]
            image = ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (r, c), v in np.ndenumerate(grid):
                text = ("–" if np.isnan(v) else f"{v:.2f}") + ("" if ok[r, c] else " ✗")
                ax.text(c, r, text, ha="center", va="center", fontsize=9,
                        color="black" if np.isnan(v) or v > 0.6 else "white")
            ax.set_xticks(range(len(loads)), [f"{a:g}" for a in loads])
            ax.set_yticks(range(len(activations)), activations if j == 0 else [""] * len(activations))
            ax.set_xlabel("load α = P/N")
            ax.set_title(f"{title}\n{titles[model]}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="fraction")
    fig.suptitle(f"Dead neurons: original vs modified on the same memories (one storage set-up per activation), "
                 f"N = {params['n_neurons']}, {table['seed'].nunique()} seed(s); ✗: the memory does not retrieve at "
                 "that load (left out of the claims); '–': nothing to measure", fontsize=12)
    return fig
