"""Figure 1 of the paper: a 2-neuron ReLU network whose steady states have a dead neuron.

W = [[0, −w], [−w, 0]] (mutual inhibition, w > 1) and b = (β, β): the steady states (β, β(1 − w)) and
(β(1 − w), β) are stable with one dead neuron each; (β/(1 + w), β/(1 + w)) is a saddle. Left: the original
dynamics (eq. 1) and energy (eq. 4); right: eq. 13 with R = I − WΛ (as written for Figure 1) and energy eq. 14.
Claims: eq. 4 is flat along the dead directions, eq. 14 is not; both vector fields make the steady states
stable (Jacobian, and trajectories from a grid of starts). Measured beside them: where the trajectories end and
whether the interior point stays a saddle. With R = I − WΛ it does not: there J = −(I − W)² ≺ 0, so eq. 13
turns the saddle of eq. 1 into an attractor (the paper's caption, "all steady states are stable", is then
literally true), and eq. 14 rises along some trajectories where one neuron is dead and WΛ is not symmetric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from hopbench.analysis.dead_neurons import flat_energy_probe
from hopbench.analysis.descent import energy_rate
from hopbench.analysis.stability import jacobian_eigenvalues
from hopbench.core.activations import build_activation
from hopbench.core.models import build_model
from hopbench.core.network import Network
from hopbench.repro import REPRODUCTIONS, Context, Verdict
from hopbench.solve import SolverConfig, integrate, polish

F64 = torch.float64


def _models(w: float, beta: float, device: torch.device) -> dict:
    W = torch.tensor([[0.0, -w], [-w, 0.0]], dtype=F64, device=device)
    net = Network(W, torch.full((2,), beta, dtype=F64, device=device), build_activation("relu"))
    return {"original (eq. 1, energy eq. 4)": build_model("original", net),
            "modified_y (eq. 13, R = I − WΛ, energy eq. 14)": build_model("modified_y", net,
                                                                         strategy="y_i_minus_w_lambda")}


@REPRODUCTIONS.register("fig1")
def run(params: dict, ctx: Context) -> list[Verdict]:
    w, beta = float(params.get("w", 2.0)), float(params.get("beta", 1.0))
    grid, extent, c_max = int(params.get("grid", 41)), float(params.get("extent", 3.0)), float(params.get("c_max", 3.0))
    models = _models(w, beta, ctx.device)
    stable = torch.tensor([[beta, beta * (1 - w)], [beta * (1 - w), beta]], dtype=F64, device=ctx.device)
    saddle = torch.full((1, 2), beta / (1 + w), dtype=F64, device=ctx.device)
    axis = torch.linspace(-extent, extent, grid, dtype=F64)
    Y1, Y2 = torch.meshgrid(axis, axis, indexing="xy")
    starts = torch.stack([Y1.ravel(), Y2.ravel()], -1).to(ctx.device)

    rows, verdicts = [], []
    net = next(iter(models.values())).net
    probe = flat_energy_probe(net, stable, [m.energy for m in models.values()], dead_tol=0.0, scale=c_max,
                              n_draws=32, generator=torch.Generator().manual_seed(ctx.seed))
    for label, model in models.items():
        y_star = polish(model, torch.cat([stable, saddle])).x
        eigs, _ = jacobian_eigenvalues(model, y_star)
        out = integrate(model, starts, SolverConfig(tol=1e-6, atol=1e-8, rtol=1e-7, t_max=100))
        distance = torch.cdist(out.x, y_star)
        ends = torch.where(distance.amin(-1) < 1e-3, distance.argmin(-1), -1)
        rate = energy_rate(model, starts, tol=1e-9)
        rows.append({"model": label, "energy": model.energy.name,
                     "max_re_jacobian_dead_states": float(eigs[:2].real.amax()),
                     "max_re_jacobian_interior_state": float(eigs[2].real.amax()),
                     "flat_variation": float(probe[model.energy.name].max()),
                     "fraction_to_dead_states": float((ends.ge(0) & ends.lt(2)).double().mean()),
                     "fraction_to_interior_state": float((ends == 2).double().mean()),
                     "fraction_to_no_steady_state": float((ends < 0).double().mean()),
                     "converged_fraction": out.fraction("converged"),
                     "lyapunov_violation_fraction": float(rate["violation"].double().mean()),
                     "lyapunov_max_relative": float(rate["relative"].max())})
    table = pd.DataFrame(rows)
    ctx.csv("fig1", table)
    orig, mod = table.iloc[0], table.iloc[1]
    verdicts.append(Verdict("eq. 4 is constant along the dead directions of the stable steady states",
                            orig["flat_variation"], "max |ΔE| ≤ 1e-12 for moves c ∈ [0, c_max]",
                            bool(orig["flat_variation"] <= 1e-12), {"c_max": c_max}))
    verdicts.append(Verdict("eq. 14 is not flat along the same directions", mod["flat_variation"],
                            "max |ΔE| ≥ 1e-3", bool(mod["flat_variation"] >= 1e-3)))
    for _, row in table.iterrows():
        ok = row["max_re_jacobian_dead_states"] < 0 and row["fraction_to_no_steady_state"] == 0
        verdicts.append(Verdict(
            f"{row['model']}: the steady states with a dead neuron are stable and every start on the grid ends at "
            "a steady state", f"max Re λ(J) = {row['max_re_jacobian_dead_states']:.3g}; ends: dead-neuron states "
            f"{row['fraction_to_dead_states']:.3f}, interior state {row['fraction_to_interior_state']:.3f}, none "
            f"{row['fraction_to_no_steady_state']:.3f} "
            f"(interior max Re λ = {row['max_re_jacobian_interior_state']:.3g})",
            "max Re λ < 0 and no start ends away from a steady state", bool(ok)))
    verdicts.append(Verdict("eq. 14 does not increase along the Figure-1 dynamics (Lyapunov check on the grid)",
                            mod["lyapunov_violation_fraction"], "violation fraction = 0 (dE/dt ≤ 1e-9·‖∇E‖‖ẏ‖)",
                            bool(mod["lyapunov_violation_fraction"] == 0),
                            {"max_relative_dEdt": mod["lyapunov_max_relative"]}))
    ctx.figure("fig1", lambda: _draw(models, stable, extent, w, beta))
    return verdicts


def _draw(models: dict, stable: torch.Tensor, extent: float, w: float, beta: float):
    import matplotlib.pyplot as plt

    n = 60
    axis = np.linspace(-extent, extent, n)
    Y1, Y2 = np.meshgrid(axis, axis)
    pts = torch.tensor(np.stack([Y1.ravel(), Y2.ravel()], -1), dtype=F64, device=stable.device)
    fig, axes = plt.subplots(2, 2, figsize=(11, 10))
    saddle = beta / (1 + w)
    for col, (label, model) in enumerate(models.items()):
        with torch.no_grad():
            v = model.vector_field(pts).cpu().numpy()
            e = model.energy.value(pts).cpu().numpy().reshape(n, n)
        ax = axes[0, col]
        ax.streamplot(Y1, Y2, v[:, 0].reshape(n, n), v[:, 1].reshape(n, n), density=1.2, color="0.35",
                      linewidth=0.8)
        ax.set_title(f"{label}\nvector field")
        ax = axes[1, col]
        shifted = e - e.min() + 1e-3
        cs = ax.contour(Y1, Y2, np.log10(shifted), levels=25, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="log10(E − min E + 10⁻³)")
        ax.set_title(f"energy {model.energy.name} level sets")
        for a in (axes[0, col], axes[1, col]):
            a.fill_between([-extent, 0], -extent, extent, color="tab:red", alpha=0.06)
            a.fill_between([-extent, extent], -extent, 0, color="tab:red", alpha=0.06)
            s = stable.cpu().numpy()
            a.plot(s[:, 0], s[:, 1], "o", color="tab:green", ms=9, label="stable steady states")
            a.plot([saddle], [saddle], "x", color="tab:red", ms=9, label="interior steady state (saddle of eq. 1)")
            a.set(xlabel="y₁", ylabel="y₂", xlim=(-extent, extent), ylim=(-extent, extent))
        axes[0, col].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"Figure 1: 2-neuron ReLU network, W = [[0, −{w:g}], [−{w:g}, 0]], b = ({beta:g}, {beta:g}); "
                 "shaded: a neuron is dead", fontsize=11)
    fig.tight_layout()
    return fig
