"""Critical load of graded fixed points (docs/design.md §6; Cohen & Lengyel 2025, abstract only).

System (§6): graded patterns x^μ, activation ``power`` φ(h) = (σ·softplus((h − θ)/σ))ⁿ (σ = 0: the hard
threshold [h − θ]₊ⁿ), fields H = φ⁻¹(X), weights W = H X⁺ with X⁺ = (XᵀX + λI)⁻¹Xᵀ (graded projection rule,
ridge λ), dynamics ẋ = −x + φ(Wx) (``modified`` model, ``identity`` strategy, b = 0). Without ridge every
pattern is an exact fixed point (the residual is recorded, ~1e-13), so its stability is read off the Jacobian
J = −I + diag(φ'(h)) W at the pattern itself, with no integration.

The trap (§6). With strictly positive patterns and θ < 0 every neuron is active, so as σ → 0 the network is
linear around each pattern (φ' → 1 for n = 1): the P − 1 directions of the other patterns get eigenvalues → 0
(a continuous attractor), and any α_S > 0 comes from the smoothing. Measured here (seed 3, N = 200): n = 1,
θ = −0.5, CV = 2 has 90 % of its patterns stable at α = 0.05 with σ = 0.1 and none with σ = 0.03 — all
marginal. So the experiment is run in three families:
- ``dense``: §6 literally — log-normal patterns (mean 1, coefficient of variation CV), smooth threshold σ swept
  over ``sigmas`` (0.1, 0.03, 0.01, 0.003), no ridge;
- ``sparse``: patterns with silent neurons — a fraction f = ``coding_level`` of the entries log-normal (mean 1,
  CV), the rest 0 — and the hard threshold σ = 0, zero activities stored with the field θ − ``dead_field``
  (strictly below threshold: φ' = 0 there). Nothing hangs on a smoothing; this family carries claims (b);
- ``ridge``: dense patterns of one configuration (``ridge_config``) with a ridge λ = r·N·E[x²] in the storage
  rule, r ∈ ``ridges``, across the same σ. The patterns are then no longer exact fixed points: each is
  polished by Newton's method from the pattern (``hopbench.solve.polish``), and counts as stored when the
  polished point converged (residual ≤ 1e-9) with cosine ≥ 0.95 to the pattern.

Verdict per stored point, with a margin m = ``marginal`` = 1e-2 instead of a threshold at rounding level:
*stable* max Re λ(J) < −m; *marginal* |max Re λ| ≤ m (eigenvalues this close to 0 are their own class — at
σ → 0 they are the continuous attractor's zero modes); *unstable* max Re λ > m; *not stored* (ridge family:
no converged fixed point within cosine 0.95 of the pattern). The stable fraction counts stable points over
all patterns analysed; ``marginal_eigs`` is the mean number of eigenvalues with |λ| < m per point.

Spectrum. W = H X⁺ has rank P, so J has N − P eigenvalues exactly −1 (the kernel of X⁺) and P non-trivial
ones, the eigenvalues of the P × P matrix −I + X⁺ diag(φ'(Wx*)) H, with H recovered from the network's own W as
H = W X (XᵀX)⁻¹(XᵀX + λI) (the non-zero eigenvalues of AB and BA coincide). The verdict uses the full N × N
Jacobian (``jacobian_eigenvalues``) on ``full_jacobian_points`` points per load and the exact reduced spectrum
elsewhere; where both exist they are compared (``spectrum_check``). The bulk/outlier split (``split_spectrum``)
is applied to the P non-trivial eigenvalues.

α_S. Loads go up the grid for all seeds together; a configuration stops once every seed has had ``patience``
consecutive loads with stable fraction 0 (higher loads are not evaluated — they are absent from the CSV, not
zeros). α_S = the load where the stable fraction falls through 0.5 (linear interpolation, ``alpha_crossing``),
from the seed-averaged curve and per seed (mean ± standard deviation over seeds, a seed without a stable
phase counting 0). Status: ``crossing``, ``no_stable_phase`` (below 0.5 at the first load; α_S counts as 0) or
``never_unstable`` (above 0.5 at every evaluated load; α_S counts as the largest load, a lower bound).

Claims:
(check) without ridge every stored pattern is an exact fixed point and the reduced spectrum reproduces the full
    Jacobian's; with ridge the polished points converge;
(a) α_S < α_C = 1 for every configuration that has a stable phase (vacuous when none has one);
(a′) hopbench's reading of the abstract — not a claim of the paper: every configuration has a stable phase;
(σ) hopbench's check of the trap of docs/design.md §6: no dense configuration has a stable phase at the smallest σ;
(b) in the sparse family (no smoothing) threshold-linear (n = 1), negative-threshold (θ < 0), heaviest-tailed
    (largest CV) patterns attain the largest α_S, and its monotone parts, each averaged over the other two
    factors: (b1) α_S(n = 1) > α_S(largest n), (b2) α_S(θ < 0, mean over the negative θ) > α_S(θ = 0),
    (b3) α_S increasing in CV. A comparison whose groups are all zero is *vacuous* (reported as failed); one
    where only one group is all zero says so in its measured figure. The same comparisons in the dense family at
    each σ are recorded in the details of claim (σ).

What the σ → 0 limit predicts (derived here, a check on the numbers): with φ = [h − θ]₊ⁿ a single pattern has
the non-trivial eigenvalue n − 1 + nθ⟨x^{2−1/n}⟩/⟨x²⟩, so for n > 1 and θ ≥ −0.5 the pattern direction is
unstable at every load (a supralinear φ amplifies a uniform rescaling of the pattern); with θ = 0 and n = 1,
φ is positively homogeneous and the pattern direction is exactly marginal.

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
from hopbench.core.activations import build_activation
from hopbench.core.data import PatternSet, build_dataset
from hopbench.core.models import build_model
from hopbench.core.system import System, generator, resolve_n_patterns
from hopbench.core.weights import WEIGHTS, build_network
from hopbench.repro import REPRODUCTIONS, Context, Verdict, cpu_threads
from hopbench.solve import polish

ALPHA_C = 1.0  # storage capacity of the pseudo-inverse rule: P ≤ N patterns are exact fixed points
STATUS_CROSSING, STATUS_NO_STABLE_PHASE, STATUS_NEVER_UNSTABLE = "crossing", "no_stable_phase", "never_unstable"
CLASSES = ("stable", "marginal", "unstable", "not_stored")
FAMILIES = ("dense", "sparse", "ridge")
STORED_COSINE = 0.95
POLISH_TOL = 1e-9
#: reduced vs full max Re λ: near σ → 0 the P − 1 eigenvalues cluster at 0 and a non-normal cluster moves by
#: ~√(machine ε) ≈ 1e-8 under rounding (measured up to 4e-8), far below the margin m = 1e-2 that classifies
SPECTRUM_CHECK = 1e-6


@dataclass(frozen=True)
class Config:
    """One configuration: pattern family, exponent n, threshold θ, CV, smoothness σ and relative ridge r."""

    family: str
    n: float
    threshold: float
    cv: float
    sigma: float
    ridge: float = 0.0

    @property
    def label(self) -> str:
        text = f"{self.family}: n={self.n:g}, θ={self.threshold:g}, CV={self.cv:g}, σ={self.sigma:g}"
        return text + (f", ridge={self.ridge:g}" if self.ridge else "")

    @property
    def factors(self) -> dict:
        return {"family": self.family, "n": self.n, "threshold": self.threshold, "cv": self.cv, "sigma": self.sigma,
                "ridge": self.ridge}


def sparse_lognormal(n_patterns: int, n_neurons: int, cv: float, coding_level: float,
                     gen: torch.Generator) -> PatternSet:
    """Patterns (P, N) with exactly round(fN) log-normal entries (mean 1, CV) per pattern and zeros elsewhere."""
    k = round(coding_level * n_neurons)
    s2 = math.log1p(cv * cv)

    def sample(m: int, g: torch.Generator) -> Tensor:
        values = torch.exp(math.sqrt(s2) * torch.randn(m, n_neurons, generator=g, dtype=torch.float64) - s2 / 2)
        order = torch.rand(m, n_neurons, generator=g, dtype=torch.float64).argsort(-1)
        mask = torch.zeros(m, n_neurons, dtype=torch.bool).scatter_(-1, order[:, :k], True)
        return torch.where(mask, values, 0.0)

    return PatternSet(sample(n_patterns, gen), "graded", sample)


def stored_system(config: Config, params: dict, *, load: float, seed: int, device: torch.device) -> System:
    """The §6 system of ``config`` at ``load`` (float64): patterns, W = H X⁺ (ridge), ẋ = −x + φ(Wx)."""
    N = int(params["n_neurons"])
    P = resolve_n_patterns(N, None, load)
    lag = build_activation("power", {"n": config.n, "threshold": config.threshold, "sigma": config.sigma})
    gen = generator(seed, "patterns")
    weights = {"graded": True, "ridge": config.ridge * N * (1 + config.cv**2)}  # r·N·E[x²], E[x] = 1
    if config.family == "sparse":
        data = sparse_lognormal(P, N, config.cv, float(params["coding_level"]), gen)
        weights["dead_field"] = float(params["dead_field"])
    else:
        data = build_dataset("lognormal", {"cv": config.cv}, n_patterns=P, n_neurons=N, generator=gen)
    net = build_network(WEIGHTS.build("pseudoinverse", weights), data, lag, generator=generator(seed, "weights"),
                        device=device, dtype=torch.float64)
    return System(data, net, build_model("modified", net, strategy="identity", energy="e3"), seed)


def reduced_spectra(system: System, x: Tensor, ridge: float) -> Tensor:
    """The P non-trivial Jacobian eigenvalues (B, P) at fixed points x (B, N): λ(−I + X⁺ diag(φ'(Wx)) H).

    W = H X⁺ with X⁺ = (XᵀX + λI)⁻¹Xᵀ has rank P; H = W X (XᵀX)⁻¹(XᵀX + λI). The other N − P eigenvalues of
    J = −I + diag(φ') W are exactly −1.
    """
    net = system.net
    X = system.data.patterns.to(net.device, net.dtype).T  # (N, P)
    gram = X.T @ X
    shifted = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    pinv = torch.linalg.solve(shifted, X.T)  # (P, N)
    H = torch.linalg.solve(gram, (net.W @ X).T).T @ shifted  # (N, P)
    slope = system.model.curvature(x).values  # φ'(h) (B, N)
    M = pinv @ (slope.unsqueeze(-1) * H)
    return torch.linalg.eigvals(M - torch.eye(M.shape[-1], dtype=M.dtype, device=M.device))


def classify(max_real: Tensor, stored: Tensor, margin: float) -> Tensor:
    """Index into CLASSES per point: stable (< −margin), marginal, unstable (> margin), not stored."""
    verdict = torch.where(max_real < -margin, 0, torch.where(max_real > margin, 2, 1))
    return torch.where(stored, verdict, 3)


def analyse_point(system: System, config: Config, params: dict) -> dict:
    """Stability of the stored patterns of one system: per-pattern spectra summarised into one row."""
    X = system.data.patterns[:params["max_points"]].to(system.device, system.dtype)
    B, N, P = X.shape[0], system.data.n_neurons, system.data.n_patterns
    ridge = config.ridge * N * (1 + config.cv**2)
    if ridge > 0:
        polished = polish(system.model, X, iterations=60, tol=POLISH_TOL)
        x = polished.x
        cos = (x * X).sum(-1) / (x.norm(dim=-1) * X.norm(dim=-1)).clamp_min(1e-300)
        stored = polished.converged & (polished.residual <= POLISH_TOL) & (cos >= STORED_COSINE)
        residual = float(polished.residual[stored].max()) if bool(stored.any()) else math.nan
        x = torch.where(stored.unsqueeze(-1), x, X)  # spectra of the rest are not used (class "not stored")
    else:
        x, stored = X, torch.ones(B, dtype=torch.bool, device=X.device)
        residual = float(system.model.residual(X).abs().max())
    reduced = reduced_spectra(system, x, ridge)
    trivial = -1.0 if P < N else -math.inf  # the N − P eigenvalues of ker X⁺
    max_real = reduced.real.amax(-1).clamp_min(trivial)
    n_full = B if params["full_jacobian_points"] is None else min(B, int(params["full_jacobian_points"]))
    check = math.nan
    if n_full > 0:
        full, _ = jacobian_eigenvalues(system.model, x[:n_full])
        check = float((full.real.amax(-1) - max_real[:n_full]).abs().max())
        max_real[:n_full] = full.real.amax(-1)
    margin = float(params["marginal"])
    verdict = classify(max_real, stored, margin)
    k = max(0, min(int(params["n_outliers"]), P - 1))
    bulk_edge, outliers = split_spectrum(reduced, k)
    row = {"n_patterns": P, "n_analysed": B,
           **{f"{c}_fraction": float((verdict == i).double().mean()) for i, c in enumerate(CLASSES)},
           "marginal_eigs": float((reduced.abs() < margin).double().sum(-1).mean()),
           "max_real_median": float(max_real[stored].median()) if bool(stored.any()) else math.nan,
           "bulk_edge_mean": float(bulk_edge[stored].mean()) if bool(stored.any()) else math.nan}
    for i in range(int(params["n_outliers"])):
        row[f"outlier_{i + 1}_real_mean"] = float(outliers[stored, i].real.mean()) if i < k else math.nan
    row.update({"fixed_point_residual_max": residual, "spectrum_check": check, "full_jacobian_points": n_full})
    return row


def sweep_config(config: Config, params: dict, seeds: list[int], device: torch.device) -> list[dict]:
    """Rows (load, seed) of one configuration, up the load grid until every seed had ``patience`` zero loads."""
    rows, zeros = [], dict.fromkeys(seeds, 0)
    patience = params["patience"]
    for load in params["loads"]:
        for seed in seeds:
            system = stored_system(config, params, load=load, seed=seed, device=device)
            row = analyse_point(system, config, params)
            zeros[seed] = zeros[seed] + 1 if row["stable_fraction"] == 0 else 0
            rows.append({**config.factors, "load": load, "load_exact": row["n_patterns"] / params["n_neurons"],
                         "seed": seed, **row})
        if patience is not None and min(zeros.values()) >= int(patience):
            break
    return rows


def configurations(params: dict) -> list[Config]:
    """The dense grid at every σ, the sparse grid (σ = 0) and the ridge family."""
    grid = list(itertools.product(params["exponents"], params["thresholds"], params["cvs"]))
    configs = [Config("dense", n, t, cv, s) for s in params["sigmas"] for n, t, cv in grid]
    configs += [Config("sparse", n, t, cv, 0.0) for n, t, cv in grid]
    rc = params["ridge_config"]
    configs += [Config("ridge", float(rc["n"]), float(rc["threshold"]), float(rc["cv"]), s, r)
                for r in params["ridges"] for s in params["sigmas"]]
    return configs


def critical_loads(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """α_S per configuration from the seed-averaged stable fraction, its status, and α_S per seed (mean ± std)."""
    rows = []
    keys = ["family", "n", "threshold", "cv", "sigma", "ridge"]
    for key, group in frame.groupby(keys, sort=False):
        mean = group.groupby("load")["stable_fraction"].mean()
        alpha, note = alpha_crossing(list(mean.index), list(mean.values), level)
        if alpha is not None:
            status, ranked = STATUS_CROSSING, alpha
        elif float(mean.iloc[0]) < level:
            status, ranked = STATUS_NO_STABLE_PHASE, 0.0
        else:
            status, ranked = STATUS_NEVER_UNSTABLE, float(mean.index.max())
        per_seed = []
        for _, g in group.groupby("seed"):
            a, _ = alpha_crossing(list(g["load"]), list(g["stable_fraction"]), level)
            first = float(g.sort_values("load")["stable_fraction"].iloc[0])
            per_seed.append(a if a is not None else (0.0 if first < level else float(g["load"].max())))
        rows.append({**dict(zip(keys, key, strict=True)), "alpha_s": alpha, "status": status, "note": note,
                     "alpha_s_for_ranking": ranked, "alpha_s_seed_mean": float(np.mean(per_seed)),
                     "alpha_s_seed_std": float(np.std(per_seed)), "alpha_s_seed_min": float(np.min(per_seed)),
                     "alpha_s_seed_max": float(np.max(per_seed)), "n_seeds": len(per_seed),
                     "stable_fraction_at_first_load": float(mean.iloc[0]),
                     "marginal_fraction_at_first_load": float(group.groupby("load")["marginal_fraction"].mean()
                                                              .iloc[0]),
                     "loads_evaluated": len(mean), "last_load_evaluated": float(mean.index.max())})
    return pd.DataFrame(rows)


def _label(r) -> str:
    return Config(r.family, r.n, r.threshold, r.cv, r.sigma, r.ridge).label


def compare(means: dict[float, float], better: float, worse: float, name: str, what: str) -> Verdict:
    """α_S(better) > α_S(worse), vacuous when both are 0 (every configuration in both groups lacks a stable phase)."""
    a, b = means[better], means[worse]
    zero = [k for k, v in ((better, a), (worse, b)) if v == 0]
    note = "" if not zero else (" — both groups all zero: nothing is compared" if len(zero) == 2 else
                                f" — the group {name} = {zero[0]:g} is all zero (no stable phase)")
    return Verdict(f"{what} (sparse family)", f"{a:.3f} vs {b:.3f}{note}",
                   "strictly larger; vacuous if both groups are all zero", a > b,
                   {f"mean_alpha_s_by_{name}": means}, vacuous=a == 0 and b == 0)


def claim_verdicts(table: pd.DataFrame, params: dict) -> list[Verdict]:
    """Claims (a), (a′), (σ), (b), (b1)–(b3) from the α_S table."""
    level, first = params["level"], min(params["loads"])
    has_phase = table[table["status"] != STATUS_NO_STABLE_PHASE]
    never = table[table["status"] == STATUS_NEVER_UNSTABLE]
    counts = {f: f"{int((g['status'] != STATUS_NO_STABLE_PHASE).sum())} of {len(g)}"
              for f, g in table.groupby("family", sort=False)}
    out = [Verdict(
        "(a) α_S < α_C = 1 for every configuration that has a stable phase (the stable fraction falls below 0.5 "
        "at some load < 1)",
        f"{len(has_phase) - len(never)} of {len(has_phase)} configurations with a stable phase lose it below "
        f"α = {max(params['loads']):g}", "every configuration with a stable phase crosses 0.5 within the loads; "
        "vacuous if none has a stable phase", len(never) == 0,
        {"never_unstable": [_label(r) for r in never.itertuples()]}, vacuous=len(has_phase) == 0)]
    out.append(Verdict(
        "(a′) hopbench's reading of the abstract, not a claim of the paper: every configuration has a stable phase "
        "(all stored points stable below α_S)",
        f"configurations with stable fraction ≥ {level:g} at α = {first:g}, per family: {counts}",
        f"stable fraction ≥ {level:g} at the smallest load for all configurations", len(has_phase) == len(table),
        {"no_stable_phase": [_label(r) for r in table[table["status"] == STATUS_NO_STABLE_PHASE].itertuples()]}))
    positive = table[table["family"].isin(("dense", "ridge"))]
    if len(positive):
        s_min = min(positive["sigma"])
        with_phase = positive[positive["status"] != STATUS_NO_STABLE_PHASE]
        by_sigma = {f: {f"{s:g}": f"{int((g['status'] != STATUS_NO_STABLE_PHASE).sum())} of {len(g)}"
                        for s, g in group.groupby("sigma", sort=True)}
                    for f, group in positive.groupby("family", sort=False)}
        dense = table[table["family"] == "dense"]
        out.append(Verdict(
            "(σ) hopbench's check of the trap of docs/design.md §6: strictly positive (dense) patterns, with or "
            "without a ridge in the storage rule, have no stable phase once the smoothing σ is small — their α_S "
            "comes from σ",
            f"configurations with a stable phase, by family and σ: {by_sigma}",
            f"none at the smallest σ = {s_min:g}; vacuous if none has one at any σ",
            not bool((with_phase["sigma"] == s_min).any()),
            {"with_stable_phase": {f"{s:g}": [_label(r) for r in g.itertuples()]
                                   for s, g in with_phase.groupby("sigma", sort=True)},
             "dense_comparisons_by_sigma": {f"{s:g}": _factor_summary(g) for s, g in dense.groupby("sigma")}},
            vacuous=with_phase.empty))
    sparse = table[table["family"] == "sparse"]
    if len(sparse):
        out += _sparse_claims(sparse)
    return out


def _means(table: pd.DataFrame, factor: str) -> dict[float, float]:
    return {float(k): round(float(v), 6) for k, v in table.groupby(factor)["alpha_s_seed_mean"].mean().items()}


def _factor_summary(table: pd.DataFrame) -> dict:
    return {f: _means(table, f) for f in ("n", "threshold", "cv")}


def _sparse_claims(sparse: pd.DataFrame) -> list[Verdict]:
    ranked = sparse.sort_values("alpha_s_seed_mean", ascending=False, kind="stable")
    best = float(ranked["alpha_s_seed_mean"].iloc[0])
    top = ranked[np.isclose(ranked["alpha_s_seed_mean"], best)]
    n_lo, cv_hi = min(sparse["n"]), max(sparse["cv"])
    predicted = [r for r in top.itertuples() if r.n == n_lo and r.threshold < 0 and r.cv == cv_hi]
    out = [Verdict(
        f"(b) threshold-linear (n = {n_lo:g}), negative-threshold, heaviest-tailed (CV = {cv_hi:g}) sparse patterns "
        "attain the largest α_S (sparse family, hard threshold)",
        f"largest α_S (mean over seeds) = {best:.3f} at {'; '.join(_label(r) for r in top.itertuples())}",
        "the maximum is attained only by predicted configurations (n = 1, θ < 0, largest CV); vacuous if every "
        "α_S is 0", bool(predicted) and len(predicted) == len(top),
        {"alpha_s_ranking": [f"{_label(r)}: {r.alpha_s_seed_mean:.3f} ± {r.alpha_s_seed_std:.3f} ({r.status})"
                             for r in ranked.itertuples()]}, vacuous=best == 0)]
    by_n, by_cv = _means(sparse, "n"), _means(sparse, "cv")
    out.append(compare(by_n, min(by_n), max(by_n), "n",
                       f"(b1) α_S is larger for n = {min(by_n):g} than for n = {max(by_n):g} (mean over θ and CV)"))
    negative = sparse[sparse["threshold"] < 0]
    by_theta = {-1.0: round(float(negative["alpha_s_seed_mean"].mean()), 6) if len(negative) else 0.0,
                0.0: _means(sparse, "threshold").get(0.0, 0.0)}
    out.append(compare(by_theta, -1.0, 0.0, "threshold_sign",
                       "(b2) α_S is larger for θ < 0 (mean over the negative thresholds) than for θ = 0 "
                       "(mean over n and CV)"))
    cvs = sorted(by_cv)
    increasing = all(by_cv[a] < by_cv[b] for a, b in itertools.pairwise(cvs))
    out.append(Verdict("(b3) α_S increases with the patterns' CV (mean over n and θ; sparse family)",
                       ", ".join(f"CV={c:g}: {by_cv[c]:.3f}" for c in cvs),
                       "strictly increasing over the CVs; vacuous if all are zero", increasing,
                       {"mean_alpha_s_by_cv": by_cv}, vacuous=all(v == 0 for v in by_cv.values())))
    return out


def check_verdict(frame: pd.DataFrame) -> Verdict:
    """Exact fixed points (no ridge) and the reduced spectrum against the full Jacobian."""
    exact = frame[frame["ridge"] == 0]
    ridge = frame[frame["ridge"] > 0]
    residual = float(exact["fixed_point_residual_max"].max())
    check = float(np.nanmax(frame["spectrum_check"].to_numpy(dtype=float)))
    ridge_res = float(np.nanmax(ridge["fixed_point_residual_max"].to_numpy(dtype=float))) if len(ridge) and \
        ridge["fixed_point_residual_max"].notna().any() else math.nan
    return Verdict(
        "every stored pattern is an exact fixed point (no ridge), polished fixed points converge (ridge), and the "
        "reduced spectrum reproduces the full Jacobian's",
        f"max residual {residual:.1e} (ridge, polished: {ridge_res:.1e}), max |Δ max Re λ| {check:.1e}",
        f"residuals ≤ {POLISH_TOL:g} and spectrum check ≤ {SPECTRUM_CHECK:g}",
        residual <= POLISH_TOL and check <= SPECTRUM_CHECK and not ridge_res > POLISH_TOL)


# --- figures ---------------------------------------------------------------------------------------------
CV_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
THETA_STYLES = ("-", "--", ":", "-.")


def draw_stable_fraction(frame: pd.DataFrame, table: pd.DataFrame, params: dict, family: str):
    """Stable (filled) and marginal (open) fraction against load: one panel per n, colour per CV, style per θ."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    frame, table = frame[frame["family"] == family], table[table["family"] == family]
    if family == "dense":  # the largest σ: the only one with a stable phase
        sigma = max(frame["sigma"])
        frame, table = frame[frame["sigma"] == sigma], table[table["sigma"] == sigma]
    ns, cvs = sorted(frame["n"].unique()), sorted(frame["cv"].unique())
    thetas = sorted(frame["threshold"].unique(), reverse=True)
    mean = frame.groupby(["n", "threshold", "cv", "load"], as_index=False)[
        ["stable_fraction", "marginal_fraction"]].mean()
    fig, axes = plt.subplots(1, len(ns), figsize=(5.2 * len(ns), 4.4), sharey=True, squeeze=False)
    for ax, n in zip(axes[0], ns, strict=True):
        for (ci, cv), (ti, theta) in itertools.product(enumerate(cvs), enumerate(thetas)):
            g = mean[(mean["n"] == n) & (mean["threshold"] == theta) & (mean["cv"] == cv)].sort_values("load")
            colour, style = CV_COLOURS[ci % len(CV_COLOURS)], THETA_STYLES[ti % len(THETA_STYLES)]
            ax.plot(g["load"], g["stable_fraction"], style, marker="o", ms=3, color=colour, lw=1.5)
            ax.plot(g["load"], g["marginal_fraction"], style, marker="o", ms=4, mfc="none", color=colour, lw=0.6,
                    alpha=0.6)
            row = table[(table["n"] == n) & (table["threshold"] == theta) & (table["cv"] == cv)].iloc[0]
            if row["status"] == STATUS_CROSSING:
                ax.plot([row["alpha_s"]], [params["level"]], marker="v", ms=9, color=colour, mec="k")
        ax.axhline(params["level"], color="k", lw=0.8, ls=":")
        ax.set(xlabel="load α = P/N", title=f"n = {n:g}", xlim=(0, 1), ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("fraction of stored points")
    handles = [Line2D([], [], color=CV_COLOURS[i % len(CV_COLOURS)], lw=2, label=f"CV = {cv:g}")
               for i, cv in enumerate(cvs)]
    handles += [Line2D([], [], color="0.3", ls=THETA_STYLES[i % len(THETA_STYLES)], label=f"θ = {t:g}")
                for i, t in enumerate(thetas)]
    handles += [Line2D([], [], color="0.3", marker="o", label="stable (max Re λ < −m)"),
                Line2D([], [], color="0.3", marker="o", mfc="none", lw=0.6, label="marginal (|max Re λ| ≤ m)"),
                Line2D([], [], color="0.3", marker="v", ls="", mec="k", label="α_S (crossing of 0.5)")]
    axes[0, -1].legend(handles=handles, loc="upper right", fontsize=7)
    what = ("sparse patterns (f = {:g}), hard threshold σ = 0".format(params["coding_level"]) if family == "sparse"
            else f"dense log-normal patterns, σ = {max(frame['sigma']):g}")
    fig.suptitle(f"Stability of stored graded patterns vs load: {what}; N = {params['n_neurons']}, "
                 f"{frame['seed'].nunique()} seed(s), m = {params['marginal']:g}", fontsize=11)
    fig.tight_layout()
    return fig


def draw_alpha_sigma(table: pd.DataFrame, frame: pd.DataFrame, params: dict):
    """α_S against σ (dense, ridge; sparse at σ = 0 as markers) and the marginal fraction at the first load."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    sigmas = sorted(params["sigmas"])
    for i, ((n, theta, cv), g) in enumerate(table[table["family"] == "dense"].groupby(["n", "threshold", "cv"])):
        g = g.sort_values("sigma")
        if g["alpha_s_seed_mean"].max() == 0 and n != min(table["n"]):
            continue  # n > 1 without a stable phase at any σ: one line at 0 would hide the others
        axes[0].errorbar(g["sigma"], g["alpha_s_seed_mean"], yerr=g["alpha_s_seed_std"], marker="o", ms=3, lw=1,
                         capsize=2, label=f"dense n={n:g} θ={theta:g} CV={cv:g}",
                         color=plt.cm.tab20(i % 20))
    for r, g in table[table["family"] == "ridge"].groupby("ridge"):
        g = g.sort_values("sigma")
        axes[0].errorbar(g["sigma"], g["alpha_s_seed_mean"], yerr=g["alpha_s_seed_std"], marker="s", ms=5, lw=2.5,
                         color="k", ls="--" if r == min(params["ridges"]) else "-.", capsize=3,
                         label=f"ridge r={r:g} (stable and stored)")
    sparse = table[table["family"] == "sparse"]
    x0 = min(sigmas) / 3
    for _, r in sparse[sparse["alpha_s_seed_mean"] > 0].iterrows():
        axes[0].errorbar([x0], [r["alpha_s_seed_mean"]], yerr=[r["alpha_s_seed_std"]], marker="*", ms=9,
                         color="tab:red", alpha=0.7)
    axes[0].plot([], [], "*", color="tab:red", ms=9, label="sparse, hard threshold (σ = 0, drawn left)")
    axes[0].set(xscale="log", xlabel="smoothness σ", ylabel="α_S (mean ± std over seeds)",
                title="critical load against the smoothing")
    axes[0].legend(fontsize=6, ncol=2)
    first = frame[frame["load"] == min(frame["load"])]
    dense = first[(first["family"] == "dense") & (first["n"] == min(first["n"]))]
    m = dense.groupby(["sigma", "threshold"])[["marginal_fraction", "stable_fraction"]].mean().reset_index()
    for ti, (theta, g) in enumerate(m.groupby("threshold")):
        axes[1].plot(g["sigma"], g["marginal_fraction"], THETA_STYLES[ti % 4], marker="o", color="tab:purple",
                     label=f"marginal, θ = {theta:g}")
        axes[1].plot(g["sigma"], g["stable_fraction"], THETA_STYLES[ti % 4], marker="s", color="tab:green",
                     label=f"stable, θ = {theta:g}")
    axes[1].set(xscale="log", xlabel="smoothness σ", ylabel="fraction of stored points",
                title=f"dense, n = {min(first['n']):g}, α = {min(frame['load']):g} (mean over CV and seeds)",
                ylim=(-0.03, 1.03))
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Critical load vs smoothing (N = {params['n_neurons']}, marginal: |λ| ≤ {params['marginal']:g})",
                 fontsize=11)
    fig.tight_layout()
    return fig


def spectra_at(config: Config, load: float, params: dict, seed: int, device: torch.device) -> dict:
    """Reduced spectra (B, P) of ``config`` at ``load`` (numpy)."""
    system = stored_system(config, params, load=load, seed=seed, device=device)
    X = system.data.patterns[:params["max_points"]].to(system.device, system.dtype)
    return {"load": load, "config": config, "eigs": reduced_spectra(system, X, 0.0).cpu().numpy()}


def draw_spectra(panels: list[dict], params: dict):
    """Complex-plane spectra (symlog real axis) of several configurations and loads."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        eigs = panel["eigs"]
        marginal = np.abs(eigs) < params["marginal"]
        ax.scatter(eigs.real[~marginal], eigs.imag[~marginal], s=5, color="0.45", alpha=0.5, label="eigenvalues")
        ax.scatter(eigs.real[marginal], eigs.imag[marginal], s=8, color="tab:purple",
                   label=f"marginal (|λ| < {params['marginal']:g}): {marginal.sum(-1).mean():.1f} per point")
        ax.axvline(0, color="k", ls="--", lw=1)
        ax.set_xscale("symlog", linthresh=1e-3, linscale=1.5)
        ax.set(xlabel="Re λ(J)  (symlog, linear within ±10⁻³)", ylabel="Im λ(J)",
               title=f"{panel['config'].label}\nα = {panel['load']:g}, {eigs.shape[0]} points", )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Non-trivial Jacobian eigenvalues at the stored patterns, N = {params['n_neurons']} "
                 "(the other N − P are −1)", fontsize=11)
    fig.tight_layout()
    return fig


# --- the reproduction ------------------------------------------------------------------------------------
def resolve(params: dict) -> dict:
    """Defaults for every parameter (see the yaml for the sizes)."""
    loads = params.get("loads") or [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    rc = dict(params.get("ridge_config") or {"n": 1.0, "threshold": -0.5, "cv": 2.0})
    return {"n_neurons": int(params.get("n_neurons", 100)), "loads": sorted(float(a) for a in loads),
            "cvs": [float(c) for c in params.get("cvs", (0.5, 1.0, 2.0))],
            "exponents": [float(n) for n in params.get("exponents", (1.0, 2.0))],
            "thresholds": [float(t) for t in params.get("thresholds", (0.0, -0.5, -2.0))],
            "sigmas": [float(s) for s in params.get("sigmas", (0.1, 0.03, 0.01, 0.003))],
            "coding_level": float(params.get("coding_level", 0.2)),
            "dead_field": float(params.get("dead_field", 0.5)),
            "ridges": [float(r) for r in params.get("ridges", (1e-3, 1e-2))], "ridge_config": rc,
            "n_seeds": int(params.get("n_seeds", 3)), "level": float(params.get("level", 0.5)),
            "marginal": float(params.get("marginal", 1e-2)), "patience": params.get("patience", 3),
            "n_outliers": int(params.get("n_outliers", 2)), "max_points": params.get("max_points"),
            "full_jacobian_points": params.get("full_jacobian_points", 1),
            "spectra": list(params.get("spectra") or []), "cpu_threads": int(params.get("cpu_threads", 1))}


@REPRODUCTIONS.register("critical_load")
def run(params: dict, ctx: Context) -> list[Verdict]:
    p = resolve(params)
    seeds = [ctx.seed + k for k in range(p["n_seeds"])]
    with cpu_threads(p["cpu_threads"], ctx.device):
        frame = pd.DataFrame([row for c in configurations(p) for row in sweep_config(c, p, seeds, ctx.device)])
        table = critical_loads(frame, p["level"])
        ctx.csv("critical_load", frame)
        ctx.csv("alpha_s", table)
        verdicts = [check_verdict(frame), *claim_verdicts(table, p)]
        if ctx.figures:
            panels = [spectra_at(Config(s["family"], float(s["n"]), float(s["threshold"]), float(s["cv"]),
                                        float(s["sigma"])), float(s["load"]), p, seeds[0], ctx.device)
                      for s in p["spectra"]]
            ctx.figure("stable_fraction", lambda: draw_stable_fraction(frame, table, p, "sparse"))
            ctx.figure("stable_fraction_dense", lambda: draw_stable_fraction(frame, table, p, "dense"))
            ctx.figure("alpha_s_sigma", lambda: draw_alpha_sigma(table, frame, p))
            if panels:
                ctx.figure("spectrum", lambda: draw_spectra(panels, p))
    return verdicts
