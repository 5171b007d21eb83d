"""Proposition 4 on an original (eq. 1) ReLU memory whose stored fixed points have dead neurons.

Network: the symmetric ReLU memory of the test suite: {0,1} patterns with exactly fN ones (f = 0.3),
W = 1.2 X X⁺ − 11ᵀ/N (pseudo-inverse rule with global inhibition), b = 0.1. Every pattern a is an exact fixed
point y* = W a + b of eq. 1 with its silent neurons at y = −0.2 (strictly dead: Λ = 0) and its active ones at
y = 1. At low load all stored fixed points are stable; near P/N ≈ 0.3–0.4 (N = 100) they turn unstable.
For each load P (N fixed), at every stored fixed point:

(i) the energy (eq. 4) Hessian Λ − ΛWΛ (eq. 6) has the dead directions in its null space (Prop. 4.1), so at
    a Jacobian-stable point the energy verdict is "inconclusive", never "certified";
(ii) the range test of Prop. 4.2 — Λ − ΛWΛ restricted to range(Λ) positive definite — agrees with the
    Jacobian verdict (max Re λ(WΛ − I) < 0) on every fixed point, stable or unstable (for ReLU, Λ is a 0/1
    projector, so the alive block of J is W_aa − I and the range matrix is I − W_aa: the test is exact);
(iii) Prop. 4.3: from a perturbed start y₀ = y* + ε (ε ~ N(0, noise²)), minimise eq. 4 (L-BFGS,
    ``minimise_energy``) to ỹ, then recover y = ỹ + P_d(W g(ỹ) + b − ỹ) (``recover_steady_state``; the
    −P_d ỹ term is needed because eq. 4 is flat in the dead coordinates, so the minimiser leaves ỹ_d = y₀_d,
    see eq. 8: y_d* = P_d(W g + b)). The recovered y must be a steady state of eq. 1 (‖r‖∞ < 1e-6) and equal
    the state the ODE reaches from the same y₀ (integration + Newton polish, ‖Δ‖∞ < 1e-6). The paper's
    formula y = ỹ + P_d(W g(ỹ) + b) is evaluated too and its residual reported (a measured finding);
(iv) Prop. 4.4: starts on the flat region {y* + V c, c ≥ 0} (V: dead directions, here −e_i for dead i, and c
    with entries up to ``c_max``) all return to y* (‖Δ‖∞ < 1e-6 after integration + polish). With g
    unchanged on the flat region, eq. 8 gives y_d(t) − y_d* = −V c e^{−t} exactly; the figure shows it.
(iii) and (iv) are run at every stable stored fixed point of every load.

Numerical note on (iii): near a barely stable point (max Re λ(J) = −δ, δ ≪ 1) eq. 4 is also nearly flat in the
alive subspace (its Hessian there has an eigenvalue ≈ δ). L-BFGS then converges slowly and stops at a small
gradient g, and the minimiser is off by about g/δ — the residual test passes while a fixed distance test
may not. Claim (iii) therefore allows ‖y_rec − y_ode‖∞ up to 10 ‖r(y_rec)‖∞/δ (the forward-error bound; δ
from the Jacobian at that point) and reports how many starts also meet the fixed 1e-6.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torchdiffeq import odeint

from hopbench.analysis.dead_neurons import minimise_energy, recover_steady_state
from hopbench.analysis.stability import StabilityConfig, analyse, jacobian_eigenvalues
from hopbench.app.compose import compose
from hopbench.core.models import Model
from hopbench.core.network import Network
from hopbench.core.system import System
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import SolverConfig, integrate, polish

F64 = torch.float64
STEADY_TOL, MATCH_TOL = 1e-6, 1e-6
CONDITION_SLACK = 10.0  # slack on the forward-error bound ‖r‖/|λ| in claim (iii)


def relu_memory(P: int, params: dict, seed: int, device: torch.device) -> System:
    """The symmetric ReLU memory (float64) with P stored {0,1} patterns on N neurons."""
    return compose(model="original", activation="relu", weights="pseudoinverse",
                   weights_params={"scale": float(params.get("scale", 1.2)),
                                   "inhibition": float(params.get("inhibition", 1.0))},
                   dataset="sparse_binary", dataset_params={"coding_level": float(params.get("coding_level", 0.3)),
                                                            "exact": True},
                   bias={"kind": "constant", "value": float(params.get("bias", 0.1))},
                   n_neurons=int(params["n"]), n_patterns=P, seed=seed, device=str(device), dtype="float64")


def solver_config(params: dict) -> SolverConfig:
    """Tight dopri5 settings: converged when ‖ẏ‖∞ < 1e-9 (then Newton-polished)."""
    return SolverConfig(method="dopri5", rtol=1e-9, atol=1e-11, tol=1e-9, t_max=float(params.get("t_max", 200.0)))


def _sup(t: Tensor) -> Tensor:
    """Row-wise ‖·‖∞ (B,)."""
    return t.abs().amax(-1)


def settle(model: Model, y0: Tensor, config: SolverConfig) -> tuple[Tensor, Tensor]:
    """Integrate eq. 1 from y0 and Newton-polish: final states (B, N) and whether the integration converged."""
    out = integrate(model, y0, config)
    return polish(model, out.x).x, out.status == 0


def recovery_check(model: Model, y_star: Tensor, params: dict, gen: torch.Generator) -> dict[str, Tensor]:
    """Prop. 4.3 at fixed points y* (B, N): energy minimum → recovered steady state vs the ODE's end state."""
    net, dead_tol = model.net, float(params["dead_tol"])
    y0 = y_star + float(params["noise"]) * torch.randn(y_star.shape, generator=gen, dtype=F64).to(y_star.device)
    iterations = int(params.get("lbfgs_iterations", 500))  # one L-BFGS run per start: rows do not share a line search
    y_tilde = torch.cat([minimise_energy(model.energy, y0[i:i + 1], iterations=iterations) for i in range(len(y0))])
    y_rec = recover_steady_state(net, y_tilde, dead_tol=dead_tol)
    P_d = net.lagrangian.hessian(y_tilde).null_projector(dead_tol)
    y_paper = y_tilde + (P_d @ (net.lagrangian.activation(y_tilde) @ net.W.T + net.b).unsqueeze(-1)).squeeze(-1)
    y_ode, converged = settle(model, y0, solver_config(params))
    return {"energy_gradient": _sup(model.energy.gradient(y_tilde)),
            "residual_recovered": _sup(model.residual(y_rec)), "residual_paper_formula": _sup(model.residual(y_paper)),
            "residual_minimiser": _sup(model.residual(y_tilde)),
            "distance_recovered_ode": _sup(y_rec - y_ode), "distance_recovered_stored": _sup(y_rec - y_star),
            "ode_converged": converged, "n_dead": net.lagrangian.hessian(y_star).nullity(dead_tol)}


def flat_starts(net: Network, y_star: Tensor, params: dict, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``flat_starts`` starts y* + V c per fixed point (c ~ U(0, c_max)^k) and the index of their fixed point."""
    reps = int(params["flat_starts"])
    V = net.lagrangian.dead_directions(y_star, float(params["dead_tol"]))  # (B, N, N), zero columns alive
    c = float(params["c_max"]) * torch.rand(y_star.shape[0], reps, V.shape[-1], generator=gen, dtype=F64)
    starts = y_star.unsqueeze(1) + torch.einsum("bnk,brk->brn", V, c.to(y_star.device))
    owner = torch.arange(y_star.shape[0], device=y_star.device).repeat_interleave(reps)
    return starts.reshape(-1, y_star.shape[-1]), owner


def flat_region_check(model: Model, y_star: Tensor, params: dict, gen: torch.Generator) -> dict[str, Tensor]:
    """Prop. 4.4: distance to y* after integration + polish, from starts on the flat region of y*."""
    starts, owner = flat_starts(model.net, y_star, params, gen)
    final, converged = settle(model, starts, solver_config(params))
    return {"distance": (final - y_star[owner]).abs().amax(-1), "converged": converged,
            "start_distance": (starts - y_star[owner]).abs().amax(-1)}


def distance_curves(model: Model, y_star: Tensor, params: dict, gen: torch.Generator) -> pd.DataFrame:
    """‖y(t) − y*‖∞ on a time grid from a few starts near the first fixed point of ``y_star`` (dopri5, tight).

    Three starts on the flat region y* + V c with c ~ U(0, c_max·10^{−j}), j = 0, 1, 2 (eq. 8: distance
    ‖Vc‖∞ e^{−t}), and one flat start whose alive coordinates are also perturbed (N(0, noise²)): that part
    relaxes at the slower rate |max Re λ(J)| of the alive block, which the flat directions never limit.
    """
    y1 = y_star[:1]
    c_max, noise, dead_tol = float(params["c_max"]), float(params["noise"]), float(params["dead_tol"])
    V = model.net.lagrangian.dead_directions(y1, dead_tol)[0]  # (N, N), zero columns for alive neurons
    alive = (model.net.lagrangian.hessian(y1).values[0].abs() > dead_tol).to(F64)
    c = torch.rand(4, V.shape[-1], generator=gen, dtype=F64).to(y1.device)
    c = c * c_max * torch.tensor([1.0, 0.1, 0.01, 1.0], dtype=F64, device=y1.device).unsqueeze(-1)
    starts = y1 + c @ V.T
    starts[3] += noise * alive * torch.randn(alive.shape, generator=gen, dtype=F64).to(y1.device)
    labels = [f"flat, c ~ U(0, {c_max:g})", f"flat, c ~ U(0, {c_max / 10:g})", f"flat, c ~ U(0, {c_max / 100:g})",
              f"flat, c ~ U(0, {c_max:g}) + alive noise {noise:g}"]
    t = torch.linspace(0.0, float(params.get("curve_t_max", 60.0)), 241, dtype=F64, device=y1.device)
    with torch.no_grad():
        path = odeint(lambda _, y: model.vector_field(y), starts, t, method="dopri5", rtol=1e-12, atol=1e-14)
    dist = (path - y1).abs().amax(-1)  # (T, S)
    max_re = float(jacobian_eigenvalues(model, y1)[0].real.amax())
    rows = [{"start": labels[s], "t": float(t[i]), "distance": float(dist[i, s]), "start_distance": float(dist[0, s]),
             "max_re_jacobian": max_re} for s in range(starts.shape[0]) for i in range(len(t))]
    return pd.DataFrame(rows)


def analyse_load(P: int, params: dict, ctx: Context) -> tuple[dict, pd.DataFrame, System, Tensor]:
    """All checks at load P: the per-load row, the per-point table, the system and its stable fixed points."""
    system = relu_memory(P, params, ctx.seed, ctx.device)
    model = system.model
    y_star = model.initial_state(system.data.patterns.to(device=ctx.device, dtype=F64))
    cfg = StabilityConfig(tol=float(params["tol"]), dead_tol=float(params["dead_tol"]))
    tab = analyse(model, y_star, cfg)
    jv, ev, rc = tab["jacobian_verdict"], tab["energy_verdict"], tab["range_certified"]
    stable = jv == 0
    columns = {"stored_residual": _sup(model.residual(y_star)), "max_re_jacobian": tab["max_real"],
               "jacobian_verdict": jv, "energy_min_eig": tab["energy_min_eig"], "energy_verdict": ev,
               "range_min_eig": tab["range_min_eig"], "range_certified": rc, "dead_fraction": tab["dead_fraction"]}
    points = pd.DataFrame({"P": P, "pattern": np.arange(P)} | {k: v.cpu().numpy() for k, v in columns.items()})
    row = {"P": P, "alpha": P / int(params["n"]), "n_points": P,
           "max_stored_residual": float(points.stored_residual.max()),
           "stable_fraction": float(stable.double().mean()), "marginal_fraction": float((jv == 1).double().mean()),
           "unstable_fraction": float((jv == 2).double().mean()),
           "energy_certified_fraction": float((ev == 0).double().mean()),
           "energy_inconclusive_fraction": float((ev == 1).double().mean()),
           "energy_unstable_fraction": float((ev == 2).double().mean()),
           "range_certified_fraction": float(rc.double().mean()),
           "n_stable": int(stable.sum()), "n_stable_inconclusive": int((stable & (ev == 1)).sum()),
           "range_jacobian_agreement": float((rc == stable).double().mean()),
           "dead_fraction": float(tab["dead_fraction"].mean())}
    gen = torch.Generator().manual_seed(ctx.seed + 7919 * P)
    y_stable = y_star[stable]
    points["recovery_residual"] = points["recovery_paper_residual"] = points["recovery_distance_ode"] = math.nan
    points["flat_max_distance"] = math.nan
    if y_stable.shape[0]:
        rec = recovery_check(model, y_stable, params, gen)
        flat = flat_region_check(model, y_stable, params, gen)
        idx = np.flatnonzero(stable.cpu().numpy())
        points.loc[idx, "recovery_residual"] = rec["residual_recovered"].cpu().numpy()
        points.loc[idx, "recovery_paper_residual"] = rec["residual_paper_formula"].cpu().numpy()
        points.loc[idx, "recovery_distance_ode"] = rec["distance_recovered_ode"].cpu().numpy()
        reps = int(params["flat_starts"])
        points.loc[idx, "flat_max_distance"] = flat["distance"].reshape(-1, reps).amax(-1).cpu().numpy()
        row.update({"recovery_n": len(idx), "recovery_max_energy_gradient": float(rec["energy_gradient"].max()),
                    "recovery_max_residual": float(rec["residual_recovered"].max()),
                    "recovery_max_distance_ode": float(rec["distance_recovered_ode"].max()),
                    "recovery_max_distance_stored": float(rec["distance_recovered_stored"].max()),
                    "recovery_ode_converged_fraction": float(rec["ode_converged"].double().mean()),
                    "minimiser_max_residual": float(rec["residual_minimiser"].max()),
                    "paper_formula_min_residual": float(rec["residual_paper_formula"].min()),
                    "paper_formula_max_residual": float(rec["residual_paper_formula"].max()),
                    "flat_n_starts": int(flat["distance"].numel()),
                    "flat_max_start_distance": float(flat["start_distance"].max()),
                    "flat_max_distance": float(flat["distance"].max()),
                    "flat_converged_fraction": float(flat["converged"].double().mean())})
    return row, points, system, y_stable


def _verdicts(loads: pd.DataFrame, points: pd.DataFrame) -> list[Verdict]:
    stable = points[points.jacobian_verdict == 0]
    n_stable, n_incon = len(stable), int((stable.energy_verdict == 1).sum())
    out = [Verdict("(i) at Jacobian-stable stored fixed points the eq. 4 Hessian (eq. 6) is inconclusive (Prop. 4.1)",
                   f"{n_incon} of {n_stable} stable fixed points inconclusive "
                   f"({n_incon / max(n_stable, 1):.3f}); energy-certified anywhere: "
                   f"{int((points.energy_verdict == 0).sum())}",
                   "fraction = 1", bool(n_stable > 0 and n_incon == n_stable),
                   {"max_energy_min_eig_stable": float(stable.energy_min_eig.abs().max()) if n_stable else None})]
    agree = (points.range_certified.astype(bool) == (points.jacobian_verdict == 0))
    out.append(Verdict(
        "(ii) the range-of-Hessian test (Prop. 4.2) agrees with the Jacobian verdict on every stored fixed point",
        f"{int(agree.sum())} of {len(points)} agree ({int((points.jacobian_verdict == 0).sum())} stable, "
        f"{int((points.jacobian_verdict == 2).sum())} unstable, {int((points.jacobian_verdict == 1).sum())} marginal)",
        "agreement on every point", bool(agree.all()),
        {"per_load": dict(zip(loads.P.astype(str), loads.range_jacobian_agreement, strict=True))}))
    rec = loads.dropna(subset=["recovery_max_residual"]) if "recovery_max_residual" in loads else loads.iloc[:0]
    if rec.empty:
        return [*out, Verdict("(iii)–(iv) recovery and flat-region checks", "no stable stored fixed point at any load",
                              "at least one stable fixed point", False)]
    res, dist = float(rec.recovery_max_residual.max()), float(rec.recovery_max_distance_ode.max())
    tried = points.dropna(subset=["recovery_distance_ode"])
    # forward-error bound: at a stable point of a symmetric J the distance to the steady state is at most
    # ‖r‖/|max Re λ(J)|; a barely stable point (|λ| ≪ 1) amplifies the minimiser's residual (see the note above)
    allowed = np.maximum(MATCH_TOL, CONDITION_SLACK * tried.recovery_residual / tried.max_re_jacobian.abs())
    bad = tried[(tried.recovery_distance_ode >= allowed) | (tried.recovery_residual >= STEADY_TOL)]
    worst = tried.loc[tried.recovery_distance_ode.idxmax()]
    strict = int((tried.recovery_distance_ode < MATCH_TOL).sum())
    out.append(Verdict(
        "(iii) the steady state recovered from an energy minimum (Prop. 4.3, with −P_d ỹ) solves eq. 1 and equals "
        "the ODE's end state from the same start",
        f"max residual {res:.3g}, max distance to the ODE state {dist:.3g}; {len(tried) - len(bad)} of {len(tried)} "
        f"starts within both, {strict} of them within {MATCH_TOL:g} (worst: P = {int(worst.P)}, pattern "
        f"{int(worst.pattern)}, max Re λ(J) = {worst.max_re_jacobian:.3g}, residual {worst.recovery_residual:.3g})",
        f"‖r‖∞ < {STEADY_TOL:g} and ‖y_rec − y_ode‖∞ < max({MATCH_TOL:g}, {CONDITION_SLACK:g}‖r‖∞/|max Re λ(J)|) "
        "on every start (the forward-error bound of a residual ‖r‖ at a point with decay rate |λ|)",
        bool(len(bad) == 0),
        {"max_energy_gradient_at_minimum": float(rec.recovery_max_energy_gradient.max()),
         "max_distance_to_stored": float(rec.recovery_max_distance_stored.max()),
         "ode_converged_fraction_min": float(rec.recovery_ode_converged_fraction.min()),
         "failing_starts": bad[["P", "pattern", "max_re_jacobian", "recovery_residual",
                                "recovery_distance_ode"]].to_dict("records")}))
    lo, hi = float(rec.paper_formula_min_residual.min()), float(rec.paper_formula_max_residual.max())
    out.append(Verdict(
        "(iii, measured) the paper's formula y = ỹ + P_d(W g(ỹ) + b), without −P_d ỹ, is not a steady state "
        "when the minimiser leaves ỹ_d ≠ 0",
        f"residual ‖r‖∞ between {lo:.3g} and {hi:.3g} (= ‖P_d ỹ‖∞)",
        f"‖r‖∞ ≥ {STEADY_TOL:g} (not a steady state) on every start", bool(lo >= STEADY_TOL)))
    flat = loads.dropna(subset=["flat_max_distance"])
    d = float(flat.flat_max_distance.max())
    out.append(Verdict(
        "(iv) starts anywhere on the flat region {y* + V c, c ≥ 0} of a stable steady state return to it (Prop. 4.4)",
        f"max distance {d:.3g} after integration + polish ({int(flat.flat_n_starts.sum())} starts, up to "
        f"‖V c‖∞ = {float(flat.flat_max_start_distance.max()):.3g})",
        f"‖y_final − y*‖∞ < {MATCH_TOL:g} on every start", bool(d < MATCH_TOL),
        {"converged_fraction_min": float(flat.flat_converged_fraction.min())}))
    return out


@REPRODUCTIONS.register("prop4")
def run(params: dict, ctx: Context) -> list[Verdict]:
    """Checks (i)–(iv) of Prop. 4 on the ReLU memory at every load in ``params['loads']``."""
    rows, tables, curves = [], [], None
    with cpu_threads(int(params.get("cpu_threads", 1)), ctx.device):
        for P in params["loads"]:
            row, points, system, y_stable = analyse_load(int(P), params, ctx)
            rows.append(row)
            tables.append(points)
            if curves is None and y_stable.shape[0]:
                curves = distance_curves(system.model, y_stable, params, torch.Generator().manual_seed(ctx.seed + 1))
                curves.insert(0, "P", int(P))
    loads, points = pd.DataFrame(rows), pd.concat(tables, ignore_index=True)
    ctx.csv("prop4_loads", loads)
    ctx.csv("prop4_points", points)
    if curves is not None:
        ctx.csv("prop4_flat_curves", curves)
    ctx.figure("prop4", lambda: _draw(loads, curves, int(params["n"])))
    return _verdicts(loads, points)


def _draw(loads: pd.DataFrame, curves: pd.DataFrame | None, n: int):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    x = np.arange(len(loads))
    series = [("stable_fraction", "Jacobian: stable", "tab:green"),
              ("energy_inconclusive_fraction", "eq. 4 Hessian: inconclusive", "tab:orange"),
              ("energy_certified_fraction", "eq. 4 Hessian: certified", "tab:red"),
              ("range_certified_fraction", "range test (Prop. 4.2): certified", "tab:blue")]
    width = 0.8 / len(series)
    for j, (key, label, color) in enumerate(series):
        values = loads[key].to_numpy()
        label += " (none)" if not values.any() else ""
        left.bar(x + (j - (len(series) - 1) / 2) * width, np.maximum(values, 0.005), width, color=color, label=label)
    left.set_xticks(x, [f"P = {p}\nα = {a:.2f}" for p, a in zip(loads.P, loads.alpha, strict=True)])
    left.set(ylabel="fraction of stored fixed points", ylim=(0, 1.12),
             title=f"Stored fixed points of the ReLU memory (N = {n})")
    left.legend(loc="upper right", fontsize=8, ncol=2)
    left.grid(axis="y", alpha=0.3)
    if curves is not None:
        colors = plt.cm.tab10(np.arange(4))
        for color, (label, sub) in zip(colors, curves.groupby("start", sort=False), strict=False):
            t = sub.t.to_numpy()
            right.semilogy(t, sub.distance, lw=3 if "alive" in label else 1.8, color=color, label=label,
                           zorder=2 if "alive" in label else 3)
            if "alive" in label:
                rate = float(sub.max_re_jacobian.iloc[0])
                mid = len(t) // 2
                ref = sub.distance.iloc[mid] * np.exp(rate * (t - t[mid]))
                right.semilogy(t, ref, ":", color="k", lw=1.2, label=f"∝ exp(max Re λ(J)·t), max Re λ = {rate:.3g}")
            else:
                right.semilogy(t, sub.start_distance.iloc[0] * np.exp(-t), "--", color="k", lw=0.8, zorder=4)
        right.plot([], [], "--", color="k", lw=0.8, label="‖Vc‖∞ · exp(−t) (eq. 8)")
        right.axhline(MATCH_TOL, color="0.5", ls="-.", lw=1, label=f"claim (iv) threshold {MATCH_TOL:g}")
        right.set(xlabel="time t", ylabel="‖y(t) − y*‖∞", ylim=(1e-13, None),
                  title=f"Return to y* from its flat region (P = {int(curves.P.iloc[0])}, first stable pattern)")
        right.legend(fontsize=8, loc="upper right")
        right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
