"""Proposition 1 across activations: energy (4) is flat along the dead directions, E2, E3 and eq. 14 are not.

Prop. 1 of the paper: if g has k dead neurons at y, described by V (N × k) with g(y + V c) = g(y) for all
c ≥ 0, then energy (4) is constant on {y + V c : c ≥ 0}. Prop. 5.3: E2 and E3 (eq. 10) have no such flat
directions; eq. 14 (the residual energy of eq. 13) neither. This reproduction probes, for one random symmetric
W (GOE, entries N(0, σ²/N)) and a small random bias b, states with dead neurons for four activations:

- ``relu`` (Example 2): y ~ N(0, 1), so about half of the neurons are dead (Λ = 0 exactly, V = −e_i);
- ``sigmoid`` (Example 3) and ``tanh`` in saturation: a random subset of neurons sits in the tails,
  |y_i| ∈ [y_dead, y_dead + width] with a random sign, the others y ~ N(0, 1). Saturation never makes Λ
  exactly zero, so "dead" needs a tolerance; it is taken from the physics, not tuned: a neuron is dead when
  its curvature is a fraction ``level`` (default 1e-6) of the activation's peak curvature,
  Λ_i ≤ dead_tol = level · max Λ (sigmoid: max Λ = 1/4 at 0; tanh: β). y_dead solves Λ(y_dead) = dead_tol
  (sigmoid: y_dead = 2 arcsech(√level) ≈ 15.2; tanh with β = 1: arcsech(√level) ≈ 7.6), so every
  tail neuron is dead and no N(0, 1) neuron is (Λ(4) ≈ 0.018 for sigmoid);
- ``softmax`` (Example 4): y ~ N(0, 1); the all-ones shift is always dead.

For each state, moves c ~ U(0, c_max)^k (``flat_energy_probe``) give max |E(y + V c) − E(y)|; u-state energies
(E2, E3) are evaluated at u with W u + b = y, moved by δu with W δu = V c (the same move of the
pre-activation). Every |ΔE| is compared with the energy scale: the RMS of E over the probed states.

Claims: (a) eq. 4 is exactly constant for relu and softmax (|ΔE| ≤ 1e-10 · scale: round-off only);
(b) for saturated sigmoid and tanh, eq. 4 varies only as much as the residual curvature allows: along the
path, dE/dt = Σ_i Λ_i (V c)_i (y_i − b_i − (W g)_i) (gradient of eq. 4, see ``KrotovHopfield``), and Λ_i
decreases outwards in the tails, so the mean-value argument of the proof of Prop. 1 gives the a-priori bound
|ΔE| ≤ B(y) = Σ_{i dead} Λ_i(y_i) c_max (|y_i| + c_max + |b_i| + Σ_j |W_ij| sup|g|), sup|g| = 1. B → 0 with
Λ on the dead set; it is checked on every state, and |ΔE| / scale is reported beside it;
(c) E2, E3 and eq. 14 are not flat: |ΔE| ≥ 1e-3 · scale on every probed state, for every activation.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hopbench.analysis.dead_neurons import flat_energy_probe
from hopbench.core.activations import Lagrangian, build_activation
from hopbench.core.models import build_energy
from hopbench.core.network import Network
from hopbench.core.weights import goe_matrix
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads

F64 = torch.float64
ACTIVATIONS = ("relu", "sigmoid", "softmax", "tanh")
EXACT = ("relu", "softmax")  # claim (a): exactly dead (Λ V = 0 exactly)
SATURATING = ("sigmoid", "tanh")  # claim (b): dead up to the curvature level
ENERGIES = {"eq4": "y", "eq14": "y", "e2": "u", "e3": "u"}
LABELS = {"eq4": "eq. 4 (original)", "eq14": "eq. 14", "e2": "E2 (eq. 10)", "e3": "E3 (eq. 10)"}
FLAT_TOL, NOT_FLAT_TOL = 1e-10, 1e-3


def peak_curvature(lagrangian: Lagrangian) -> float:
    """max_h Λ(h) of an element-wise activation on a fine grid of [−20, 20] (1 for relu, 1/4 for sigmoid)."""
    h = torch.linspace(-20.0, 20.0, 40001, dtype=F64).unsqueeze(0)
    return float(lagrangian.hessian(h).values.max())


def saturation_edge(lagrangian: Lagrangian, dead_tol: float) -> float:
    """y > 0 with Λ(y) = dead_tol for a saturating element-wise activation (Λ decreasing on y > 0): bisection."""
    lo, hi = 0.0, 1.0
    while float(lagrangian.hessian(torch.tensor([[hi]], dtype=F64)).values) > dead_tol:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(lagrangian.hessian(torch.tensor([[mid]], dtype=F64)).values) > dead_tol:
            lo = mid
        else:
            hi = mid
    return hi


def probe_states(name: str, lagrangian: Lagrangian, params: dict, n: int,
                 generator: torch.Generator) -> tuple[Tensor, float, float]:
    """States (B, n) with dead neurons for activation ``name``, the dead tolerance and y_dead (nan if unused).

    See the module docstring for how each activation's states are drawn and how dead_tol is chosen.
    """
    B, level = int(params["n_states"]), float(params["level"])
    y = torch.randn(B, n, generator=generator, dtype=F64)
    if name == "softmax":
        return y, level * lagrangian.beta, math.nan
    dead_tol = level * peak_curvature(lagrangian)
    if name not in SATURATING:
        return y, dead_tol, math.nan
    y_dead = saturation_edge(lagrangian, dead_tol)
    tail = torch.rand(B, n, generator=generator, dtype=F64) < float(params["saturated_fraction"])
    sign = torch.where(torch.rand(B, n, generator=generator, dtype=F64) < 0.5, -1.0, 1.0).to(F64)
    depth = y_dead + float(params["width"]) * torch.rand(B, n, generator=generator, dtype=F64)
    return torch.where(tail, sign * depth, y), dead_tol, y_dead


def mean_value_bound(net: Network, y: Tensor, dead_tol: float, c_max: float) -> Tensor:
    """B(y) (B,): a-priori bound on |ΔE| of eq. 4 for moves c ∈ [0, c_max] along the dead directions.

    From dE/dt = Σ_i Λ_i (Vc)_i (y_i − b_i − (W g)_i) with Λ_i decreasing outwards and |g| ≤ 1 (sigmoid, tanh).
    """
    lam = net.lagrangian.hessian(y).values
    dead = lam.abs() <= dead_tol
    row = net.W.abs().sum(-1)
    per_neuron = lam * c_max * (y.abs() + c_max + net.b.abs() + row)
    return torch.where(dead, per_neuron, torch.zeros_like(per_neuron)).sum(-1)


def probe_activation(name: str, W: Tensor, b: Tensor, params: dict, generator: torch.Generator) -> list[dict]:
    """One row per energy: |ΔE| statistics over the probed states of activation ``name``."""
    lagrangian = build_activation(name)
    net = Network(W, b, lagrangian)
    y, dead_tol, y_dead = probe_states(name, lagrangian, params, W.shape[0], generator)
    y = y.to(W.device)  # drawn on the CPU generator, the same states on every device
    c_max = float(params["c_max"])
    energies = [build_energy(e, net, state=s) for e, s in ENERGIES.items()]
    probe = flat_energy_probe(net, y, energies, dead_tol=dead_tol, n_draws=int(params["n_draws"]), scale=c_max,
                              generator=generator)
    bound = mean_value_bound(net, y, dead_tol, c_max) if name in SATURATING else None
    W_pinv = torch.linalg.pinv(W)
    rows = []
    for energy in energies:
        x = y if energy.state == "y" else (y - b) @ W_pinv.T
        scale = float(energy.value(x).pow(2).mean().sqrt())
        dE = probe[energy.name]
        row = {"activation": name, "energy": energy.name, "n_states": y.shape[0],
               "n_dead_mean": float(probe["n_dead"].double().mean()), "n_dead_min": int(probe["n_dead"].min()),
               "dead_tol": dead_tol, "y_dead": y_dead, "c_max": c_max, "energy_scale": scale,
               "max_abs_dE": float(dE.max()), "median_abs_dE": float(dE.median()), "min_abs_dE": float(dE.min()),
               "max_rel_dE": float(dE.max()) / scale, "min_rel_dE": float(dE.min()) / scale,
               "bound_max": math.nan, "max_dE_over_bound": math.nan, "within_bound": math.nan}
        if bound is not None and energy.name == "eq4":
            ratio = dE / bound.clamp_min(torch.finfo(F64).tiny)
            row.update(bound_max=float(bound.max()), max_dE_over_bound=float(ratio.max()),
                       within_bound=bool((dE <= bound).all()))
        rows.append(row)
    return rows


def _verdicts(table: pd.DataFrame) -> list[Verdict]:
    out = []
    eq4 = table[table.energy == "eq4"].set_index("activation")
    for name in EXACT:
        r = eq4.loc[name]
        out.append(Verdict(f"(a) {name}: eq. 4 is exactly constant along the dead directions (Prop. 1)",
                           r["max_rel_dE"], f"max |ΔE| ≤ {FLAT_TOL:g} × energy scale (RMS of E) on every state",
                           bool(r["max_rel_dE"] <= FLAT_TOL),
                           {"max_abs_dE": r["max_abs_dE"], "energy_scale": r["energy_scale"],
                            "n_states": int(r["n_states"]), "n_dead_mean": r["n_dead_mean"], "c_max": r["c_max"]}))
    for name in SATURATING:
        r = eq4.loc[name]
        out.append(Verdict(
            f"(b) {name} in saturation: eq. 4 is constant along the dead directions up to the residual curvature "
            f"(dead: Λ ≤ {r['dead_tol']:.3g}, |y| ≥ {r['y_dead']:.2f})",
            f"max |ΔE|/scale = {r['max_rel_dE']:.3g}; max |ΔE|/B(y) = {r['max_dE_over_bound']:.3g}",
            "|ΔE| ≤ B(y) = Σ_dead Λ_i c_max (|y_i| + c_max + |b_i| + Σ_j|W_ij|) on every state",
            bool(r["within_bound"]),
            {"max_abs_dE": r["max_abs_dE"], "bound_max": r["bound_max"], "energy_scale": r["energy_scale"],
             "n_dead_mean": r["n_dead_mean"], "c_max": r["c_max"]}))
    for energy in ("e2", "e3", "eq14"):
        sub = table[table.energy == energy].set_index("activation")
        worst = float(sub["min_rel_dE"].min())
        out.append(Verdict(f"(c) {LABELS[energy]} is not flat along the dead directions, for every activation",
                           worst, f"min over states of max |ΔE| ≥ {NOT_FLAT_TOL:g} × energy scale",
                           bool(worst >= NOT_FLAT_TOL),
                           {f"{a}_min_rel_dE": float(sub.loc[a, "min_rel_dE"]) for a in sub.index}))
    return out


@REPRODUCTIONS.register("prop1")
def run(params: dict, ctx: Context) -> list[Verdict]:
    """Probe energy variation along dead directions for every activation in ``params['activations']``."""
    n = int(params["n"])
    gen = torch.Generator().manual_seed(ctx.seed)
    W = goe_matrix(n, float(params["sigma"]), gen)
    b = float(params["bias_scale"]) * torch.randn(n, generator=gen, dtype=F64)
    rows = []
    with cpu_threads(int(params.get("cpu_threads", 1)), ctx.device):
        for i, name in enumerate(params.get("activations", ACTIVATIONS)):
            g = torch.Generator().manual_seed(ctx.seed + 1 + i)
            rows += probe_activation(name, W.to(ctx.device), b.to(ctx.device), params, g)
    table = pd.DataFrame(rows)
    ctx.csv("prop1", table)
    ctx.figure("prop1", lambda: _draw(table, n))
    return _verdicts(table)


def _draw(table: pd.DataFrame, n: int):
    import matplotlib.pyplot as plt

    activations = list(dict.fromkeys(table.activation))
    energies = list(ENERGIES)
    floor = 1e-18
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.8 / len(energies)
    colors = {"eq4": "tab:red", "eq14": "tab:purple", "e2": "tab:blue", "e3": "tab:green"}
    for j, energy in enumerate(energies):
        sub = table[table.energy == energy].set_index("activation").reindex(activations)
        x = np.arange(len(activations)) + (j - (len(energies) - 1) / 2) * width
        values = sub["max_rel_dE"].to_numpy()
        ax.bar(x, np.maximum(values, floor), width, color=colors[energy], label=LABELS[energy])
        lows = np.maximum(sub["min_rel_dE"].to_numpy(), floor)
        ax.plot(x, lows, "_", color="k", ms=12, mew=2)
        for xi, v in zip(x, values, strict=True):
            if v < floor:
                ax.annotate("0\n(exact)", (xi, floor), ha="center", va="bottom", fontsize=8)
    ax.plot([], [], "_", color="k", ms=12, mew=2, label="smallest over states")
    ax.axhline(FLAT_TOL, color="tab:red", ls="--", lw=1, label=f"claim (a): flat, ≤ {FLAT_TOL:g}")
    ax.axhline(NOT_FLAT_TOL, color="tab:blue", ls="--", lw=1, label=f"claim (c): not flat, ≥ {NOT_FLAT_TOL:g}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, None)
    names = {"relu": "relu", "sigmoid": "sigmoid\n(saturated)", "softmax": "softmax\n(shift)",
             "tanh": "tanh\n(saturated)"}
    ax.set_xticks(np.arange(len(activations)), [names.get(a, a) for a in activations])
    ax.set_ylabel("max |E(y + Vc) − E(y)| / energy scale (RMS of E)")
    c_max = float(table.c_max.iloc[0])
    ax.set_title(f"Prop. 1: energy change along the dead directions V (N = {n}, GOE W, c ∈ [0, {c_max:g}]^k)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
