"""The claims of the paper that only the unit tests checked before: Prop. 2 (bias insensitivity of eq. 4),
Examples 5.1–5.4 and 6.2, Prop. 5.2 (``polar_f``) and condition (12) — each computed by runs of the models.

Networks (float64, tanh with β = ``beta``, b = 0 unless said; ±1 patterns X, P = ``load``·N):
- ``pd``: W = XᵀX/N + εI, symmetric positive definite (ε = ``epsilon``): Examples 5.1, 5.2, 5.4, 6.1, Prop. 5.2;
- ``indefinite``: the Hebbian W = XᵀX/N with zero diagonal (eigenvalues −P/N on the complement of the
  patterns): where R = I does not make E2 non-increasing, and Prop. 5.2's R = O(u) does;
- ``low_rank``: W = XᵀX/N, rank P (Example 5.1's warning: R = W is singular off the patterns' span);
- ``dissipative``: W = (A − Aᵀ)/√(2N) − δI with A Gaussian (δ = ``delta``), non-symmetric with numerical
  abscissa ω(W) = −δ ≤ 0: Example 6.2's condition for R = Λ.
Each (network, strategy, energy) run integrates cues (``flip`` 5 %) and random ±1 starts (dopri5, the
benchmark's solver settings in float64), and measures: the Lyapunov check (§5.6: dE/dt ≤ tol·‖∇E‖‖ẋ‖ at
cues, random states and states along trajectories; energy rises between accepted solver steps), condition
(11) at the same states where ∇E = −G r holds exactly, retrieval, stalls (converged with residual
‖r‖∞ > 100·tol: R singular), and, at every distinct fixed point reached (Newton-polished, residual ≤ 1e-8),
the Jacobian verdict of eq. 9 under that R, condition (12) (Prop. 5.4: sym(F(I − ΛW)) ≻ 0, the Hessian of the
energy at the fixed point) and, for E2, W − WΛW ≻ 0 (Example 5's form of (12)).

Claims:
(Prop. 2) on the ReLU memory of repro-prop4 (stored fixed points y* with silent neurons at y = −0.2): eq. 1 with
    the bias moved along the dead directions V (b' = b ∓ Vc, V pointing into the dead region, c ≥ 0) has a
    different steady state y′, but eq. 4 with the original bias b takes the same value there (it cannot tell
    the systems apart), and E(·; b) is non-increasing along eq. 1 with bias b' wherever the V neurons stay
    dead: dE_b/dt = −r_bᵀΛr_b + r_bᵀΛVc and ΛV = 0. The paper writes b = b̃ − Vc: with V pointing into the
    dead region that *raises* the dead neurons' bias, and once c exceeds their margin (0.2 here) they wake
    and the argument fails — both signs are run and the woken states are counted apart. Eq. 14 with bias b is
    not blind: E14(y′; b) = ½‖b − b'‖² > 0;
(Ex. 5.1) R = W makes E2 non-increasing for symmetric W (RᵀW + WR = 2W² ⪰ 0) — and, the paper's warning,
    with a low-rank W the flow stalls where f reaches the null space of W (stalls > 0);
(Ex. 5.2) R = O (polar factor of W): E2 non-increasing and no stalls on the same low-rank W;
(Ex. 5.3) W = KKᵀ ≻ 0 and R ≻ 0: condition (11) RW + WR ⪰ 0 (state-independent for E2, so it *is* the
    Lyapunov condition) holds for every R with κ(R) ≤ ((√κ(W) + 1)/(√κ(W) − 1))² (the sharp 2 × 2 bound; derived
    and checked here, the paper cites it) on random draws, and fails for an R aligned with W's extreme
    eigenvectors at 1.5 times that condition number: the restriction is needed;
(Ex. 5.4) R solving RW + WR = Q (Bartels–Stewart, Q = I, W ≻ 0): residual ≤ 1e-8, R ≻ 0, E2 non-increasing,
    no stalls, and the patterns retrieved as with R = I;
(Ex. 6.2) R = Λ: E3 non-increasing when ω(W) ≤ 0 (the ``dissipative`` W); the details give the violations on
    the ``pd`` W, where ω(W) > 0 and the condition fails;
(Prop. 5.2) R = O(u) from the polar decomposition of F(u) makes the chosen energy non-increasing for any
    weights: E2 on the indefinite W (where R = I violates it, the next claim) and E(α = 0.5, β = 1, γ = 1, S
    random SPD) on the pd W;
(R = I, E2) R = I makes E2 non-increasing only when W ⪰ 0 (docs/design.md §3; (11) with F = W): no violation on the
    pd W, violations on the indefinite W;
(12) at every distinct fixed point of the runs whose pairing the theory backs, condition (12) certifies
    stability: no point where (12) holds is Jacobian-unstable. Where R is singular at the point (R = Λ at
    saturated neurons, R = W off its range) the Jacobian is marginal although (12) holds: the energy's strict
    minimum gives Lyapunov stability, not asymptotic stability; those points are counted apart;
(12, Ex. 5) for E2, (12) is W − WΛW ≻ 0 (F = W): both verdicts agree at every fixed point of the E2 runs.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hopbench.analysis.metrics import lyapunov_check, retrieval
from hopbench.analysis.stability import StabilityConfig, analyse, eigvalsh
from hopbench.core.activations import build_activation
from hopbench.core.data import Flip, build_dataset
from hopbench.core.models import build_model
from hopbench.core.network import Network
from hopbench.core.system import System, generator, resolve_n_patterns
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.repro.example7 import along_trajectories, distinct
from hopbench.repro.prop4 import relu_memory
from hopbench.solve import CONVERGED, STALLED, SolverConfig, integrate, polish

F64 = torch.float64
FIXED_POINT_TOL = 1e-8
NETWORKS = ("pd", "indefinite", "low_rank", "dissipative")
#: (network, strategy, energy, energy params, what the run checks)
RUNS = (
    ("pd", "identity", "e2", {}, "R = I, E2, W ⪰ 0"),
    ("indefinite", "identity", "e2", {}, "R = I, E2, W indefinite"),
    ("pd", "w", "e2", {}, "Ex. 5.1"),
    ("indefinite", "w", "e2", {}, "Ex. 5.1"),
    ("low_rank", "w", "e2", {}, "Ex. 5.1, low rank"),
    ("pd", "polar", "e2", {}, "Ex. 5.2"),
    ("low_rank", "polar", "e2", {}, "Ex. 5.2, low rank"),
    ("pd", "lyapunov_equation", "e2", {}, "Ex. 5.4"),
    ("pd", "i_minus_wt_lambda", "e3", {}, "Ex. 6.1"),
    ("dissipative", "lambda", "e3", {}, "Ex. 6.2, ω(W) ≤ 0"),
    ("pd", "lambda", "e3", {}, "Ex. 6.2, ω(W) > 0"),
    ("indefinite", "polar_f", "e2", {}, "Prop. 5.2"),
    ("pd", "polar_f", "combined", {"alpha": 0.5, "beta": 1.0, "gamma": 1.0, "S": "random_spd"}, "Prop. 5.2"),
)


def network(kind: str, params: dict, seed: int, device: torch.device) -> tuple[Network, object]:
    """The weights of ``kind`` (see the module docstring) with their ±1 patterns (PatternSet)."""
    N = int(params["n_neurons"])
    P = resolve_n_patterns(N, None, float(params["load"]))
    data = build_dataset("random_binary", None, n_patterns=P, n_neurons=N, generator=generator(seed, "patterns"))
    X = data.patterns
    hebb = X.T @ X / N
    eye = torch.eye(N, dtype=F64)
    if kind == "pd":
        W = hebb + float(params["epsilon"]) * eye
    elif kind == "indefinite":
        W = hebb.fill_diagonal_(0.0)
    elif kind == "low_rank":
        W = hebb
    else:
        A = torch.randn(N, N, generator=generator(seed, "weights"), dtype=F64)
        W = (A - A.T) / math.sqrt(2 * N) - float(params["delta"]) * eye
    lag = build_activation("tanh", {"beta": float(params["beta"])})
    return Network(W, torch.zeros(N, dtype=F64), lag).to(device, F64), data


def fixed_point_table(model, x: Tensor) -> pd.DataFrame:
    """Verdicts at distinct fixed points x (K, N): Jacobian of eq. 9 under the model's R, condition (12), and for
    E2 also W − WΛW ≻ 0 (Example 5's form of (12))."""
    table = analyse(model, x, StabilityConfig())
    rows = {"jacobian_verdict": [("stable", "marginal", "unstable")[i] for i in table["jacobian_verdict"].tolist()],
            "max_real": table["max_real"].cpu().numpy(),
            "condition12": table["condition12_holds"].cpu().numpy(),
            "condition12_min_eig": table["condition12_min_eig"].cpu().numpy(),
            "energy_verdict": [("certified", "inconclusive", "unstable")[i] for i in table["energy_verdict"].tolist()],
            "min_sigma_R": torch.linalg.svdvals(model.strategy.matrix(x, model.preactivation(x)))[:, -1].cpu().numpy()}
    if model.energy.name == "e2":
        W = model.net.W
        M = W - torch.matmul(W, model.curvature(x).left(W))
        eigs = eigvalsh(0.5 * (M + M.transpose(-1, -2)))
        rows["example5_form"] = (eigs[:, 0] > 1e-6 * eigs.abs().amax(-1).clamp_min(1.0)).cpu().numpy()
    return pd.DataFrame(rows)


def measure_run(kind: str, strategy: str, energy: str, energy_params: dict, params: dict, seed: int,
                device: torch.device, solver: SolverConfig) -> tuple[dict, pd.DataFrame]:
    """One (network, strategy, energy) run: Lyapunov check, retrieval, stalls, fixed-point verdicts."""
    net, data = network(kind, params, seed, device)
    model = build_model("modified", net, strategy=strategy, energy=energy, energy_params=energy_params)
    system = System(data, net, model, seed)
    cue = Flip(level=float(params["cue_level"]))
    lyap = lyapunov_check(system, model, cue, solver, n_states=int(params["n_states"]),
                          tol=float(params["lyapunov_tol"]), trace_rtol=float(params["trace_rtol"]),
                          threshold=float(params["threshold"]))
    ret = retrieval(system, model, cue, solver, n_cues=int(params["n_cues"]), threshold=float(params["threshold"]))
    random = data.sample(int(params["n_random"]), generator(seed, "strategies-random")).to(device, F64)
    out = integrate(model, model.initial_state(random), solver)
    stalls = out.status == STALLED  # ẋ ≈ 0 with ‖r‖∞ > solver.stall_factor·tol (hopbench.solve.endings)
    ends = torch.cat([ret.extras["trajectories"].x, out.x])
    done = torch.cat([ret.extras["trajectories"].status, out.status]) == CONVERGED
    polished = polish(model, ends[done])
    points = distinct(polished.x[polished.residual <= FIXED_POINT_TOL], 1e-6)
    table = fixed_point_table(model, points) if points.shape[0] else pd.DataFrame()
    sym_spectrum = torch.linalg.eigvalsh(0.5 * (net.W + net.W.T))
    row = {"network": kind, "strategy": strategy, "energy": model.energy.name,
           "theory_backed": model.backing.backed, "theory_reasons": "; ".join(model.backing.reasons),
           "omega_W": float(sym_spectrum[-1]), "lambda_min_sym_W": float(sym_spectrum[0]),
           "lyapunov_violation_fraction": lyap.scalars["lyapunov_violation_fraction"],
           "lyapunov_max_relative_violation": lyap.scalars["lyapunov_max_relative_violation"],
           "trajectory_energy_increase_fraction": lyap.scalars["trajectory_energy_increase_fraction"],
           "condition11_fraction": lyap.scalars.get("condition11_fraction"),
           "retrieval_accuracy": ret.scalars["retrieval_accuracy"],
           "retrieval_stalled": ret.scalars["retrieval_stall_fraction"],
           "retrieval_diverged": ret.scalars["status_counts"]["diverged"],
           "random_starts": random.shape[0], "random_converged": int((out.status == CONVERGED).sum()),
           "random_diverged": out.counts()["diverged"],
           "random_stalls": int(stalls.sum()), "stall_fraction": float(stalls.double().mean()),
           "fixed_points": points.shape[0]}
    if strategy == "lyapunov_equation":
        row["lyapunov_residual"] = model.strategy.residual
        row["lyapunov_R_min_eig"] = float(torch.linalg.eigvalsh(0.5 * (model.strategy.R + model.strategy.R.T))[0])
    return row, table


# --- Prop. 2 ------------------------------------------------------------------------------------------------
def prop2(params: dict, seed: int, device: torch.device, solver: SolverConfig) -> pd.DataFrame:
    """Eq. 1 with the bias moved along the dead directions of each stored fixed point (both signs, several c):
    the steady state y′, eq. 4 and eq. 14 with the original bias there, and dE_b/dt along the trajectories."""
    spec = params["prop2"]
    system = relu_memory(int(spec["n_patterns"]), {"n": int(spec["n_neurons"])}, seed, device)
    model, net = system.model, system.net
    y_star = model.initial_state(system.data.patterns.to(device, F64))
    V = net.lagrangian.dead_directions(y_star, 1e-6)  # (B, N, N): −e_i for the dead neurons, zero columns alive
    dead = V.abs().sum(-2) > 0  # (B, N)
    gen = generator(seed, "prop2")
    rows = []
    for sign, name in ((1.0, "b + Vc (deeper into the dead region)"), (-1.0, "b − Vc (the paper's sign)")):
        for c in spec["c_levels"]:
            shift = -sign * float(c) * dead.to(F64)  # b' − b = ±V c with V = −e_i on the dead neurons
            rows += _prop2_rows(model, net, y_star, dead, shift, name, float(c), spec, gen, solver)
    return pd.DataFrame(rows)


def _prop2_rows(model, net: Network, y_star: Tensor, dead: Tensor, shift: Tensor, name: str, c: float, spec: dict,
                gen: torch.Generator, solver: SolverConfig) -> list[dict]:
    rows = []
    tol = float(spec["lyapunov_tol"])
    for i in range(y_star.shape[0]):
        shifted = build_model("original", Network(net.W, net.b + shift[i], net.lagrangian))
        y0 = y_star[i:i + 1] + float(spec["noise"]) * torch.randn(1, net.n, generator=gen, dtype=F64).to(y_star)
        states = torch.cat([y0, along_trajectories(shifted, y0, [float(t) for t in spec["times"]], solver)])
        grad = model.energy.gradient(states)  # eq. 4 with the original bias b
        ydot = shifted.vector_field(states)
        rate = (grad * ydot).sum(-1)
        scale = grad.norm(dim=-1) * ydot.norm(dim=-1)
        violation = rate > tol * scale
        still_dead = (states[:, dead[i]] < 0).all(-1)
        end = polish(shifted, integrate(shifted, y0, solver).x)
        y_prime = end.x
        e4 = model.energy.value(torch.cat([y_star[i:i + 1], y_prime]))
        r_b = model.residual(y_prime)
        rows.append({"sign": name, "c": c, "pattern": i, "states": states.shape[0],
                     "violations_dead": int((violation & still_dead).sum()), "states_dead": int(still_dead.sum()),
                     "violations_woken": int((violation & ~still_dead).sum()), "states_woken": int((~still_dead).sum()),
                     "end_residual": float(end.residual.max()), "end_V_dead": bool((y_prime[0, dead[i]] < 0).all()),
                     "distance_to_y_star": float((y_prime - y_star[i]).abs().max()),
                     "eq4_difference": float((e4[1] - e4[0]).abs()), "eq4_scale": float(e4[0].abs().clamp_min(1.0)),
                     "eq14_at_y_prime": float(0.5 * (r_b**2).sum()),
                     "half_bias_shift_squared": float(0.5 * (shift[i] ** 2).sum())})
    return rows


# --- Example 5.3 --------------------------------------------------------------------------------------------
def kappa_bound(kappa_w: float) -> float:
    """The largest κ(R) for which RW + WR ⪰ 0 holds for every SPD R, W with κ(W) = kappa_w (sharp for 2 × 2)."""
    s = math.sqrt(kappa_w)
    return ((s + 1) / (s - 1)) ** 2


def worst_angle_min_eig(kappa_r: float, kappa_w: float, n: int = 4001) -> tuple[float, float]:
    """min over rotations θ of λ_min(RW + WR) for 2 × 2 W = diag(1, κ_W), R = Q_θ diag(1, κ_R) Q_θᵀ: (θ*, value)."""
    W = np.diag([1.0, kappa_w])
    best = (0.0, math.inf)
    for t in np.linspace(0.0, math.pi / 2, n):
        Q = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        R = Q @ np.diag([1.0, kappa_r]) @ Q.T
        value = float(np.linalg.eigvalsh(R @ W + W @ R)[0])
        if value < best[1]:
            best = (float(t), value)
    return best


def example53(params: dict, seed: int) -> dict:
    """Ex. 5.3: W = KKᵀ (K: N × 2N Gaussian), random SPD R at the κ bound, and a worst-case R above it."""
    spec = params["example53"]
    N = int(spec["n_neurons"])
    gen = np.random.default_rng(int(generator(seed, "ex53").initial_seed()) % 2**32)
    K = gen.standard_normal((N, 2 * N)) / math.sqrt(2 * N)
    W = K @ K.T
    w_eigs, w_vecs = np.linalg.eigh(W)
    kappa_w = float(w_eigs[-1] / w_eigs[0])
    bound = kappa_bound(kappa_w)
    at_bound = []
    for _ in range(int(spec["n_draws"])):
        Q, _ = np.linalg.qr(gen.standard_normal((N, N)))
        R = Q @ np.diag(np.geomspace(1.0, bound, N)) @ Q.T
        at_bound.append(float(np.linalg.eigvalsh(R @ W + W @ R)[0]) / float(np.abs(W).max()))
    v1, v2 = w_vecs[:, 0], w_vecs[:, -1]  # W's extreme eigenvectors: the 2 × 2 worst case embedded in N dims

    def aligned(kappa_r: float) -> float:
        """min λ(RW + WR)/max|W| for R = I + (κ_R − 1) b bᵀ, b rotated by the worst angle in span(v1, v2)."""
        theta, _ = worst_angle_min_eig(kappa_r, kappa_w)
        b = -math.sin(theta) * v1 + math.cos(theta) * v2
        R = np.eye(N) + (kappa_r - 1.0) * np.outer(b, b)
        return float(np.linalg.eigvalsh(R @ W + W @ R)[0]) / float(np.abs(W).max())

    factor = float(spec["above_factor"])
    return {"kappa_W": kappa_w, "kappa_R_bound": bound, "min_eig_at_bound": min(at_bound), "draws": len(at_bound),
            "min_eig_aligned_at_bound": aligned(bound), "kappa_R_above": factor * bound,
            "min_eig_above": aligned(factor * bound)}


# --- verdicts -----------------------------------------------------------------------------------------------
def _runs(frame: pd.DataFrame, note: str) -> pd.DataFrame:
    return frame[frame["note"] == note]


def _lyapunov_ok(rows: pd.DataFrame) -> bool:
    return bool(len(rows)) and bool((rows["lyapunov_violation_fraction"] == 0).all()) and bool(
        (rows["trajectory_energy_increase_fraction"] == 0).all())


def _lyapunov_text(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.network}: violations {r.lyapunov_violation_fraction:.3g}, rises "
                     f"{r.trajectory_energy_increase_fraction:.3g}, stalls {r.random_stalls}/{r.random_starts}"
                     for r in rows.itertuples())


LYAPUNOV_TOLERANCE = "violation fraction = 0 at the sampled states and no energy rise between solver steps"


def verdicts_from(runs: pd.DataFrame, points: pd.DataFrame, p2: pd.DataFrame, ex53: dict) -> list[Verdict]:
    out = _prop2_verdicts(p2)
    e51, low = _runs(runs, "Ex. 5.1"), _runs(runs, "Ex. 5.1, low rank")
    out.append(Verdict("(Ex. 5.1) R = W makes E2 non-increasing for symmetric W", _lyapunov_text(e51),
                       LYAPUNOV_TOLERANCE, _lyapunov_ok(e51), vacuous=e51.empty))
    stalls = int(low["random_stalls"].sum()) if len(low) else 0
    out.append(Verdict("(Ex. 5.1, the paper's warning) with a low-rank W, R = W stalls the flow where f reaches the "
                       "null space of W (false memories)", _lyapunov_text(low) + f"; stalled random starts: {stalls}",
                       "stalls > 0 among the random starts (E2 still non-increasing)",
                       stalls > 0 and _lyapunov_ok(low), vacuous=low.empty))
    e52, e52_low = _runs(runs, "Ex. 5.2"), _runs(runs, "Ex. 5.2, low rank")
    base = _runs(runs, "R = I, E2, W ⪰ 0")
    out.append(Verdict("(Ex. 5.2) R = O from the polar decomposition W = OP makes E2 non-increasing, never stalls "
                       "(O is orthogonal) and retrieves as R = I does (invertible W)",
                       _lyapunov_text(e52) + (f"; retrieval {float(e52['retrieval_accuracy'].min()):.3f} (R = I: "
                                              f"{float(base['retrieval_accuracy'].min()):.3f})" if len(base) else ""),
                       LYAPUNOV_TOLERANCE + "; no stalls; equal retrieval", _lyapunov_ok(e52) and
                       int(e52["random_stalls"].sum()) == 0 and bool(len(base)) and
                       float(e52["retrieval_accuracy"].min()) == float(base["retrieval_accuracy"].min()),
                       vacuous=e52.empty))
    if len(e52_low):
        r = e52_low.iloc[0]
        out.append(Verdict(
            "(Ex. 5.2, the remedy for Ex. 5.1's stalls) on the low-rank W, R = O excludes the false memories: no "
            "stall, and the cues are retrieved",
            f"stalls {int(r['random_stalls'])}/{int(r['random_starts'])}; diverged: {int(r['retrieval_diverged'])} "
            f"cue and {int(r['random_diverged'])} random trajectories; retrieval {r['retrieval_accuracy']:.3f} "
            f"(Lyapunov violations {r['lyapunov_violation_fraction']:.3g})",
            "no stalls and retrieval ≥ 0.9", int(r["random_stalls"]) == 0 and r["retrieval_accuracy"] >= 0.9,
            {"why": "the polar factor of a singular W is not unique on null(W), and E2 is flat there (dE2/dt = −fᵀPf "
                    "= 0 for f in null(P)): the factor torch's SVD returns (O = UVᵀ) maps null(W) to itself with "
                    "eigenvalues down to −1 (measured), so u̇ = −O u grows along those directions. Choosing O = I "
                    "on null(W) would avoid it; the polar decomposition itself does not make that choice."}))
    out.append(Verdict(
        "(Ex. 5.3) W = KKᵀ ≻ 0, R ≻ 0: RW + WR ⪰ 0 (condition (11) for E2, the same at every state) holds when "
        "κ(R) ≤ ((√κ(W) + 1)/(√κ(W) − 1))², and the restriction is needed",
        f"κ(W) = {ex53['kappa_W']:.3g}, bound κ(R) ≤ {ex53['kappa_R_bound']:.4g}: min λ(RW + WR)/max|W| over "
        f"{ex53['draws']} random R at the bound = {ex53['min_eig_at_bound']:.3g}, for the worst-aligned R at the "
        f"bound {ex53['min_eig_aligned_at_bound']:.1e}; worst-aligned at κ(R) = {ex53['kappa_R_above']:.4g}: "
        f"{ex53['min_eig_above']:.3g}",
        "≥ −1e-12 at the bound (random and worst-aligned R), < 0 above it",
        min(ex53["min_eig_at_bound"], ex53["min_eig_aligned_at_bound"]) >= -1e-12 and ex53["min_eig_above"] < 0,
        ex53))
    e54 = _runs(runs, "Ex. 5.4")
    ok54 = _lyapunov_ok(e54) and bool(len(e54)) and float(e54["lyapunov_residual"].max()) <= 1e-8 and \
        float(e54["lyapunov_R_min_eig"].min()) > 0 and int(e54["random_stalls"].sum()) == 0
    out.append(Verdict(
        "(Ex. 5.4) W ≻ 0: R solving RW + WR = Q (Q = I) is positive definite, makes E2 non-increasing, never stalls "
        "and retrieves the patterns as R = I does",
        _lyapunov_text(e54) + (f"; residual {float(e54['lyapunov_residual'].max()):.1e}, min λ(R) "
                               f"{float(e54['lyapunov_R_min_eig'].min()):.3g}; retrieval "
                               f"{float(e54['retrieval_accuracy'].min()):.3f} (R = I: "
                               f"{float(base['retrieval_accuracy'].min()):.3f})" if len(e54) and len(base) else ""),
        LYAPUNOV_TOLERANCE + "; residual ≤ 1e-8, R ≻ 0, no stalls, retrieval equal to R = I's",
        ok54 and bool(len(base)) and float(e54["retrieval_accuracy"].min()) == float(base["retrieval_accuracy"].min()),
        vacuous=e54.empty))
    e62, e62_bad = _runs(runs, "Ex. 6.2, ω(W) ≤ 0"), _runs(runs, "Ex. 6.2, ω(W) > 0")
    out.append(Verdict("(Ex. 6.2) R = Λ makes E3 (S = I) non-increasing when the numerical abscissa ω(W) ≤ 0",
                       _lyapunov_text(e62) + (f" (ω(W) = {float(e62['omega_W'].max()):.3g})" if len(e62) else ""),
                       LYAPUNOV_TOLERANCE, _lyapunov_ok(e62),
                       {"where_omega_positive": e62_bad[["network", "omega_W", "lyapunov_violation_fraction",
                                                         "trajectory_energy_increase_fraction"]].to_dict("records")},
                       vacuous=e62.empty))
    p52 = _runs(runs, "Prop. 5.2")
    out.append(Verdict("(Prop. 5.2) R = O(u) from the polar decomposition of F(u) makes the chosen energy "
                       "non-increasing for any weights (E2 on the indefinite W; E(0.5, 1, 1, S random SPD) on the pd "
                       "W)",
                       "; ".join(f"{r.network}/{r.energy}: violations {r.lyapunov_violation_fraction:.3g}, rises "
                                 f"{r.trajectory_energy_increase_fraction:.3g}" for r in p52.itertuples()),
                       LYAPUNOV_TOLERANCE, _lyapunov_ok(p52), vacuous=p52.empty))
    good, bad = _runs(runs, "R = I, E2, W ⪰ 0"), _runs(runs, "R = I, E2, W indefinite")
    out.append(Verdict(
        "(R = I, E2) the identity strategy makes E2 non-increasing only when W ⪰ 0 (docs/design.md §3: dE2/dt = −fᵀWf; "
        "(11) with F = W)",
        f"W ⪰ 0: violations {float(good['lyapunov_violation_fraction'].max()):.3g}; W indefinite (λ_min = "
        f"{float(bad['lambda_min_sym_W'].min()):.3g}): violations {float(bad['lyapunov_violation_fraction'].max()):.3g}"
        if len(good) and len(bad) else "missing runs",
        "0 for W ⪰ 0 and > 0 for the indefinite W", _lyapunov_ok(good) and len(bad) > 0 and
        float(bad["lyapunov_violation_fraction"].max()) > 0, vacuous=good.empty or bad.empty))
    out += _condition12_verdicts(points)
    return out


def _prop2_verdicts(p2: pd.DataFrame) -> list[Verdict]:
    still = p2[p2["end_V_dead"]]
    rel = still["eq4_difference"] / still["eq4_scale"]
    moved = still["distance_to_y_star"]
    dead_states, dead_viol = int(p2["states_dead"].sum()), int(p2["violations_dead"].sum())
    woken_states, woken_viol = int(p2["states_woken"].sum()), int(p2["violations_woken"].sum())
    by_sign = {s: {"woken_states": int(g["states_woken"].sum()), "violations_woken": int(g["violations_woken"].sum()),
                   "end_states_V_dead": int(g["end_V_dead"].sum()), "runs": len(g)}
               for s, g in p2.groupby("sign", sort=False)}
    eq14 = still["eq14_at_y_prime"] - still["half_bias_shift_squared"]
    return [
        Verdict("(Prop. 2) eq. 4 cannot tell the biases apart: at the steady state y′ of eq. 1 with the bias moved "
                "along the dead directions (V neurons still dead), E(y′; b) = E(y*; b) although y′ ≠ y*",
                f"max |ΔE|/max(1, |E|) = {float(rel.max()) if len(rel) else math.nan:.2e} over {len(still)} shifted "
                f"systems; min ‖y′ − y*‖∞ = {float(moved.min()) if len(moved) else math.nan:.3g}",
                "|ΔE| ≤ 1e-10·max(1, |E|) and ‖y′ − y*‖∞ ≥ the smallest c", bool(len(still)) and
                float(rel.max()) <= 1e-10 and float(moved.min()) >= float(still["c"].min()) * (1 - 1e-6),
                vacuous=still.empty),
        Verdict("(Prop. 2) E(·; b) is non-increasing along eq. 1 with bias b ∓ Vc wherever the V neurons stay dead "
                "(ΛV = 0); the paper's sign b − Vc wakes them once c exceeds their margin",
                f"violations at {dead_viol} of {dead_states} states with the V neurons dead; at states where one "
                f"woke: {woken_viol} of {woken_states}", "0 violations where the V neurons stay dead",
                dead_viol == 0, {"by_sign": by_sign}, vacuous=dead_states == 0),
        Verdict("(Prop. 2, contrast) eq. 14 with the original bias is not blind: E14(y′; b) = ½‖b − b′‖² > 0 at the "
                "shifted steady states", f"min E14(y′; b) = {float(still['eq14_at_y_prime'].min()):.3g}, max "
                f"|E14 − ½‖b − b′‖²| = {float(eq14.abs().max()):.1e}" if len(still) else "no shifted system",
                "E14 > 0 and equal to ½‖b − b′‖² within 1e-10", bool(len(still)) and
                float(still["eq14_at_y_prime"].min()) > 0 and float(eq14.abs().max()) <= 1e-10,
                vacuous=still.empty),
    ]


def _condition12_verdicts(points: pd.DataFrame) -> list[Verdict]:
    backed = points[points["theory_backed"]] if len(points) else points
    holds = backed[backed["condition12"]] if len(backed) else backed
    false_cert = holds[holds["jacobian_verdict"] == "unstable"] if len(holds) else holds
    marginal = holds[holds["jacobian_verdict"] == "marginal"] if len(holds) else holds

    def per_run(frame: pd.DataFrame) -> dict:
        return {f"{k[0]}/{k[1]}/{k[2]}": len(g) for k, g in frame.groupby(["network", "strategy", "energy"])}

    unbacked = points[~points["theory_backed"]] if len(points) else points
    e2 = points[points["energy"] == "e2"] if len(points) else points
    agree = (e2["condition12"] == e2["example5_form"]) if len(e2) else pd.Series(dtype=bool)
    return [
        Verdict("(12) condition (12) certifies stability: at the fixed points of the runs the theory backs, no point "
                "where (12) holds is Jacobian-unstable (where R is singular there the Jacobian is marginal: "
                "Lyapunov, not asymptotic, stability)",
                f"(12) holds at {len(holds)} of {len(backed)} fixed points: Jacobian-stable "
                f"{len(holds) - len(false_cert) - len(marginal)}, marginal (R singular) {len(marginal)}, unstable "
                f"{len(false_cert)}", "0 unstable points where (12) holds; vacuous if (12) holds nowhere",
                len(false_cert) == 0,
                {"holds_by_run": per_run(holds), "marginal_by_run": per_run(marginal),
                 "not_holding_but_stable_by_run": per_run(backed[~backed["condition12"]
                                                                 & (backed["jacobian_verdict"] == "stable")])
                 if len(backed) else {},
                 "unbacked_runs_holds_and_unstable": per_run(unbacked[unbacked["condition12"]
                                                                      & (unbacked["jacobian_verdict"] == "unstable")])
                 if len(unbacked) else {}},
                vacuous=holds.empty),
        Verdict("(12, Ex. 5) for E2, condition (12) is W − WΛW ≻ 0 (F = W)",
                f"{int(agree.sum())} of {len(agree)} fixed points of the E2 runs give the same verdict",
                "agreement at every fixed point; vacuous without any", bool(len(agree)) and bool(agree.all()),
                vacuous=not len(agree)),
    ]


@REPRODUCTIONS.register("strategies")
def run(params: dict, ctx: Context) -> list[Verdict]:
    solver = SolverConfig(**params.get("solver", {}))
    rows, tables = [], []
    with cpu_threads(int(params.get("cpu_threads", 1)), ctx.device):
        for kind, strategy, energy, energy_params, note in RUNS:
            row, table = measure_run(kind, strategy, energy, energy_params, params, ctx.seed, ctx.device, solver)
            rows.append({**row, "note": note})
            if len(table):
                tables.append(table.assign(network=kind, strategy=strategy, energy=row["energy"],
                                           theory_backed=row["theory_backed"], note=note))
        p2 = prop2(params, ctx.seed, ctx.device, solver)
    ex53 = example53(params, ctx.seed)
    runs = pd.DataFrame(rows)
    points = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    ctx.csv("runs", runs)
    ctx.csv("fixed_points", points)
    ctx.csv("prop2", p2)
    ctx.csv("example53", pd.DataFrame([ex53]))
    verdicts = verdicts_from(runs, points, p2, ex53)
    ctx.figure("strategies", lambda: _draw(runs, points, p2))
    return verdicts


def _draw(runs: pd.DataFrame, points: pd.DataFrame, p2: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.6))
    labels = [f"{r.strategy}/{r.energy}\n{r.network}" for r in runs.itertuples()]
    x = np.arange(len(runs))
    axes[0].bar(x - 0.27, runs["lyapunov_violation_fraction"], 0.27, label="Lyapunov violations (sampled states)")
    axes[0].bar(x, runs["stall_fraction"], 0.27, label="stalled random starts (R singular)")
    axes[0].bar(x + 0.27, runs["random_diverged"] / runs["random_starts"], 0.27, label="diverged random starts")
    for i, backed in enumerate(runs["theory_backed"]):
        if not backed:
            axes[0].text(i, 1.02, "not backed", rotation=90, ha="center", va="bottom", fontsize=7)
    axes[0].set_xticks(x, labels, rotation=90, fontsize=7)
    axes[0].set(ylim=(0, 1.25), ylabel="fraction", title="Each R/S pairing: energy rises, stalls, divergence")
    axes[0].legend(fontsize=7)
    if len(points):
        cats = ["stable", "marginal", "unstable"]
        counts = {(h, c): int(((points["condition12"] == h) & (points["jacobian_verdict"] == c)).sum())
                  for h in (True, False) for c in cats}
        bottom = np.zeros(2)
        for c, colour in zip(cats, ("tab:green", "tab:orange", "tab:red"), strict=True):
            values = np.array([counts[(True, c)], counts[(False, c)]])
            axes[1].bar([0, 1], values, bottom=bottom, color=colour, label=f"Jacobian {c}")
            bottom += values
        axes[1].set_xticks([0, 1], ["(12) holds", "(12) fails"])
        axes[1].set(ylabel="distinct fixed points (all runs)", title="Condition (12) against the Jacobian of eq. 9")
        axes[1].legend(fontsize=8)
    for (sign, g), colour in zip(p2.groupby("sign", sort=False), ("tab:blue", "tab:red"), strict=False):
        axes[2].scatter(g["c"], g["violations_woken"] + g["violations_dead"], color=colour, alpha=0.6,
                        label=f"{sign}: violations of dE_b/dt ≤ 0")
        axes[2].scatter(g["c"], g["states_woken"], marker="x", color=colour, alpha=0.6,
                        label=f"{sign}: states with a V neuron awake")
    axes[2].set(xlabel="bias shift c along the dead directions", ylabel="states (per stored fixed point)",
                title="Prop. 2: eq. 4 with the old bias along eq. 1 with b ∓ Vc")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("R/S strategies of the modified model (Examples 5–6, Prop. 5.2, condition (12)) and Prop. 2",
                 fontsize=12)
    fig.tight_layout()
    return fig
