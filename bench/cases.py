"""The benchmark cases: retrieval against two baselines, roofline, stability analysis, scaling.

Each case returns a :class:`CaseResult`: rows for the table and CSV, notes (agreement checks, scaling and
skips) and targets.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint

from bench.baselines import eigvals_loop, odeint_retrieval, scipy_retrieval, torch_speed
from bench.harness import Measurement, measure, timed
from bench.workloads import BETA, RetrievalProblem, fixed_points, retrieval_problem, retrieved
from hopbench import compose
from hopbench.analysis.metrics import make_cues
from hopbench.analysis.stability import jacobian_eigenvalues
from hopbench.core.data import Flip
from hopbench.solve import STATUSES, SolverConfig, Trajectories, integrate, polish
from hopbench.solve.newton import finish

__all__ = ["CaseResult", "Settings", "Target", "endings_case", "gpu_retrieval_case", "retrieval_case", "roofline_case",
           "scaling_case", "settings_for", "stability_case", "warm_up"]

LOAD = 0.05
EST_EVALS = 110  # vector-field evaluations per trajectory at α = 0.05 (measured: ~102 at N = B = 512)
EST_OVERHEAD = 3.0  # first guess of solver time per evaluation / bare vector-field time (~3 at N = B = 512, CPU)
WARMUP_SHARE = 0.25  # the scaling warm-up (one window, t ≤ 1) costs about this share of a full call
BYTES_PER_STATE = 16  # a dopri5 solve holds about 16 (B, N) tensors at once (7 stages, y, error, interp, ...)


@dataclass(frozen=True)
class Settings:
    """Sizes and repeats; ``settings_for`` picks the full or the --quick set."""

    device: torch.device
    repeats: int
    quick: bool
    retrieval_n: int = 512
    retrieval_b: int = 512
    loads: tuple[float, ...] = (0.05, 0.12)
    scipy_cues: int = 64
    roofline_n: int = 1024
    roofline_calls: int = 20
    stability_n: int = 256
    stability_b: int = 256
    scaling_n: tuple[int, ...] = (128, 512, 2048)
    scaling_b: tuple[int, ...] = (64, 512, 4096)
    scaling_limit_s: float = 120.0  # skip a combination whose warm-up + one repeat is estimated above this
    deadline: float = math.inf  # time.perf_counter() by which the whole run should be done
    gpu_n: int = 4096
    gpu_b: int = 4096
    gpu_scipy_cues: int = 8


def settings_for(device: torch.device, quick: bool, repeats: int | None, deadline: float) -> Settings:
    """Full sizes, or the --quick set; ``deadline`` (perf_counter seconds) bounds the scaling case."""
    if not quick:
        return Settings(device, repeats or 3, False, deadline=deadline)
    return Settings(device, repeats or 1, True, retrieval_n=128, retrieval_b=128, scipy_cues=8, roofline_n=256,
                    roofline_calls=5, stability_n=48, stability_b=48, scaling_n=(64, 128), scaling_b=(16, 64),
                    scaling_limit_s=10.0, deadline=deadline, gpu_n=1024, gpu_b=1024, gpu_scipy_cues=4)


@dataclass
class Target:
    name: str
    measured: float
    threshold: float

    @property
    def met(self) -> bool:
        return self.measured >= self.threshold


@dataclass
class CaseResult:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def log(message: str) -> None:
    print(f"  · {message}", flush=True)


def _subset(batch: int, k: int) -> Tensor:
    """The first k cues: cue i targets pattern i mod P, so they cover every stored pattern about equally
    (once each when k >= P), as the full batch does; per-cue cost depends mostly on the pattern."""
    return torch.arange(min(k, batch))


# warm-up ------------------------------------------------------------------------------------------------
def warm_up(s: Settings) -> None:
    """Touch every code path once (BLAS/LAPACK threads, torchdiffeq, scipy, CUDA context) before measuring."""
    prob = retrieval_problem(64, 16, LOAD, s.device)
    model, net = prob.system.model, prob.system.net
    cfg = SolverConfig(t_max=5.0)
    integrate(model, prob.x0, cfg)
    odeint_retrieval(net.W, net.b, BETA, prob.x0, cfg)
    scipy_retrieval(net.W.double().cpu().numpy(), net.b.double().cpu().numpy(), BETA,
                    prob.x0[:2].double().cpu().numpy(), cfg)
    system, x, _ = fixed_points(32, 8, LOAD, s.device)
    jacobian_eigenvalues(system.model, x)
    eigvals_loop(system.model.jacobian, x[:2])


# 1. retrieval -------------------------------------------------------------------------------------------
RETRIEVAL_COLUMNS = ["alpha", "implementation", "N", "B", "device", "dtype", "wall_s", "min_s", "max_s",
                     "hopbench_speedup", "nfe_per_traj", "peak_mib", "retrieved", "converged", "other_cpu", "note"]


def _row(alpha: float, impl: str, prob: RetrievalProblem, device: str, dtype: str, m: Measurement,
         wall: float, **extra: Any) -> dict[str, Any]:
    lo, hi = m.spread
    scale = wall / m.median
    return {"alpha": alpha, "implementation": impl, "N": prob.n, "B": prob.batch, "device": device, "dtype": dtype,
            "wall_s": wall, "min_s": lo * scale, "max_s": hi * scale, "peak_mib": m.peak_mib,
            "other_cpu": m.other_cpu, **extra}


def _retrieval_one(s: Settings, prob: RetrievalProblem, alpha: float, scipy_cues: int,
                   case: CaseResult, with_targets: bool) -> None:
    cfg = SolverConfig()
    model, net, dev = prob.system.model, prob.system.net, s.device
    dtype = str(prob.system.dtype).removeprefix("torch.")
    B = prob.batch

    hop = measure(lambda: integrate(model, prob.x0, cfg), dev, repeats=s.repeats)
    traj = hop.result
    ok_hop = retrieved(model.readout(traj.x), prob.targets)
    log(f"α={alpha}: hopbench integrate {hop.median:.3f} s, {traj.counts()}")
    windowed = SolverConfig(backend="torchdiffeq")
    win = measure(lambda: integrate(model, prob.x0, windowed), dev, repeats=s.repeats)
    ok_win = retrieved(model.readout(win.result.x), prob.targets)
    log(f"α={alpha}: hopbench integrate, backend=torchdiffeq {win.median:.3f} s, {win.result.counts()}")

    ode = measure(lambda: odeint_retrieval(net.W, net.b, BETA, prob.x0, cfg), dev, repeats=s.repeats)
    ok_ode = retrieved(torch.tanh(BETA * ode.result.x), prob.targets)
    ode_conv = (torch_speed(net.W, net.b, BETA, ode.result.x) < cfg.tol).double().mean().item()
    log(f"α={alpha}: torchdiffeq odeint full batch {ode.median:.3f} s")

    idx = _subset(B, scipy_cues)
    W64, b64 = net.W.double().cpu().numpy(), net.b.double().cpu().numpy()
    y0 = prob.x0[idx.to(prob.x0.device)].double().cpu().numpy()
    cpu = torch.device("cpu")
    sp = measure(lambda: scipy_retrieval(W64, b64, BETA, y0, cfg), cpu, repeats=s.repeats)
    ok_sp = retrieved(torch.from_numpy(np.tanh(BETA * sp.result.x)), prob.targets[idx])
    sp_wall = sp.median * B / len(idx)
    log(f"α={alpha}: scipy solve_ivp {sp.median:.3f} s for {len(idx)} cues → {sp_wall:.3f} s for {B}")

    case.rows += [
        _row(alpha, "hopbench.integrate", prob, str(dev), dtype, hop, hop.median, hopbench_speedup=1.0,
             nfe_per_traj=traj.nfe.double().mean().item(), retrieved=ok_hop.double().mean().item(),
             converged=traj.fraction("converged"),
             note="default SolverConfig(): dopri5, t_max=200, a step size per row (backend rows)"),
        _row(alpha, "hopbench.integrate (torchdiffeq)", prob, str(dev), dtype, win, win.median,
             hopbench_speedup=win.median / hop.median, nfe_per_traj=win.result.nfe.double().mean().item(),
             retrieved=ok_win.double().mean().item(), converged=win.result.fraction("converged"),
             note="backend=torchdiffeq: batch-wide steps, converged rows leave at window ends"),
        _row(alpha, "scipy solve_ivp per cue", prob, "cpu", "float64", sp, sp_wall,
             hopbench_speedup=sp_wall / hop.median, nfe_per_traj=float(sp.result.evaluations.mean()),
             retrieved=ok_sp.double().mean().item(), converged=float(sp.result.converged.mean()),
             note=f"RK45 + terminal event; timed on {len(idx)} of {B} cues, scaled ×{B / len(idx):g}"),
        _row(alpha, "torchdiffeq odeint batch", prob, str(dev), dtype, ode, ode.median,
             hopbench_speedup=ode.median / hop.median, nfe_per_traj=float(ode.result.calls),
             retrieved=ok_ode.double().mean().item(), converged=ode_conv,
             note="dopri5 over [0, 200], no early stop, default norm"),
    ]
    same_ode = int((ok_hop == ok_ode).sum())
    sub = ok_hop[idx]
    same_sp = int((sub == ok_sp).sum())
    verdict = "OK" if same_ode == B and same_sp == len(idx) else "MISMATCH"
    case.notes.append(
        f"α={alpha}, N={prob.n}, B={B}: fraction retrieved — hopbench {ok_hop.double().mean():.4f}, odeint "
        f"{ok_ode.double().mean():.4f} (same outcome on {same_ode}/{B} cues); on the {len(idx)} scipy cues "
        f"hopbench {sub.double().mean():.4f}, scipy {ok_sp.double().mean():.4f} (same outcome on "
        f"{same_sp}/{len(idx)}): {verdict}")
    if with_targets:
        mm = _per_call(lambda: torch.matmul(prob.x0, net.W), s, 20)
        equivalent = traj.nfe.double().sum().item() / B  # full-batch-equivalent evaluations
        bound = mm.median * equivalent
        case.notes.append(
            f"α={alpha}: at the matmul roofline ({mm.median * 1e3:.2f} ms per (B×N)·(N×N) product, measured now) "
            f"hopbench's {equivalent:.0f} full-batch-equivalent evaluations would take {bound:.3f} s, so with this "
            f"number of evaluations no torch implementation can beat the scipy script by more than "
            f"{sp_wall / bound:.1f}×; hopbench reaches {sp_wall / hop.median:.1f}×, the rest of its time being "
            "per-step element-wise work (python bench/profile_engine.py splits it)")
        # a speed-up only counts where the outcomes agree cue by cue
        same = verdict == "OK"
        case.targets += [Target(f"retrieval α={alpha}: hopbench vs scipy solve_ivp (≥ 10×), same outcomes: "
                                f"{'yes' if same else 'NO'}", sp_wall / hop.median if same else 0.0, 10),
                         Target(f"retrieval α={alpha}: hopbench vs torchdiffeq odeint (≥ 2×), same outcomes: "
                                f"{'yes' if same else 'NO'}", ode.median / hop.median if same else 0.0, 2)]


def retrieval_case(s: Settings) -> CaseResult:
    case = CaseResult("retrieval", "1. Retrieval: B cues (5 % flipped) to convergence", RETRIEVAL_COLUMNS)
    for alpha in s.loads:
        prob = retrieval_problem(s.retrieval_n, s.retrieval_b, alpha, s.device)
        _retrieval_one(s, prob, alpha, s.scipy_cues, case, with_targets=alpha == LOAD)
    case.notes.append("hopbench_speedup = this row's wall time / hopbench's wall time (> 1: hopbench is faster). "
                      "scipy works in float64 (solve_ivp converts the state), the torch runs in float32. "
                      "nfe_per_traj counts every vector-field evaluation (scipy: solver + event checks).")
    return case


def gpu_retrieval_case(s: Settings) -> CaseResult:
    case = CaseResult("retrieval_gpu", f"1b. Retrieval on {s.device}: N = B = {s.gpu_n}", RETRIEVAL_COLUMNS)
    prob = retrieval_problem(s.gpu_n, s.gpu_b, LOAD, s.device)
    _retrieval_one(s, prob, LOAD, s.gpu_scipy_cues, case, with_targets=False)
    case.notes.append("The scipy baseline runs on the CPU (one cue at a time) and is scaled from a subset.")
    return case


# 2. roofline --------------------------------------------------------------------------------------------
ROOFLINE_COLUMNS = ["operation", "N", "B", "device", "dtype", "ms_per_call", "gflops", "fraction_of_matmul",
                    "peak_mib", "other_cpu", "note"]


def _per_call(fn: Callable[[], Any], s: Settings, calls: int) -> Measurement:
    def loop() -> None:
        with torch.no_grad():
            for _ in range(calls):
                fn()

    m = measure(loop, s.device, repeats=s.repeats)
    m.times = [t / calls for t in m.times]
    return m


def roofline_case(s: Settings) -> CaseResult:
    case = CaseResult("roofline", "2. Roofline: vector-field throughput vs a bare matmul", ROOFLINE_COLUMNS)
    n = s.roofline_n
    prob = retrieval_problem(n, n, LOAD, s.device)
    model, W, x = prob.system.model, prob.system.net.W, prob.x0
    flops = 2.0 * n * n * n
    mm = _per_call(lambda: torch.matmul(x, W), s, s.roofline_calls)
    vf = _per_call(lambda: model.vector_field(x), s, s.roofline_calls)
    sol = measure(lambda: integrate(model, x, SolverConfig()), s.device, repeats=s.repeats)
    equivalent = sol.result.nfe.double().sum().item() / n  # full-batch-equivalent evaluations
    per_eval = sol.median / equivalent
    base = {"N": n, "B": n, "device": str(s.device), "dtype": "float32"}
    case.rows += [
        {**base, "operation": "torch.matmul (B×N)·(N×N)", "ms_per_call": mm.median * 1e3,
         "gflops": flops / mm.median / 1e9, "fraction_of_matmul": 1.0, "peak_mib": mm.peak_mib,
         "other_cpu": mm.other_cpu,
         "note": f"median of {s.repeats} × {s.roofline_calls} calls"},
        {**base, "operation": "model.vector_field(x)", "ms_per_call": vf.median * 1e3,
         "gflops": flops / vf.median / 1e9, "fraction_of_matmul": mm.median / vf.median, "peak_mib": vf.peak_mib,
         "other_cpu": vf.other_cpu,
         "note": "W tanh(βy) − y + b"},
        {**base, "operation": "integrate / evaluation", "ms_per_call": per_eval * 1e3,
         "gflops": flops / per_eval / 1e9, "fraction_of_matmul": mm.median / per_eval, "peak_mib": sol.peak_mib,
         "other_cpu": sol.other_cpu,
         "note": f"{sol.median:.3f} s / {equivalent:.1f} full-batch-equivalent evaluations"},
    ]
    log(f"matmul {mm.median * 1e3:.3f} ms, vector_field {vf.median * 1e3:.3f} ms, integrate {per_eval * 1e3:.3f} ms "
        "per evaluation")
    case.targets.append(Target(f"roofline N=B={n}: vector_field throughput / matmul (≥ 60 %)",
                               mm.median / vf.median, 0.6))
    case.notes.append("fraction_of_matmul = bare matmul time / this operation's time per (full-batch) evaluation; "
                      "the solver row divides one integrate call by Σ nfe / B.")
    return case


# 3. stability -------------------------------------------------------------------------------------------
STABILITY_COLUMNS = ["implementation", "N", "B", "device", "dtype", "wall_s", "min_s", "max_s", "hopbench_speedup",
                     "ms_per_point", "peak_mib", "other_cpu", "note"]


def _spectra_agree(engine: Tensor, general: Tensor) -> tuple[float, float, bool]:
    """(max |Δ| of sorted real parts, max |imag| of the general spectra, agree) relative to the spectral scale."""
    a = torch.sort(engine.real, -1).values
    b = torch.sort(general.real, -1).values
    scale = max(1.0, float(general.abs().max()))
    diff, imag = float((a - b).abs().max()), float(general.imag.abs().max())
    return diff, imag, diff <= 1e-8 * scale and imag <= 1e-8 * scale


def stability_case(s: Settings) -> CaseResult:
    case = CaseResult("stability", "3. Stability: Jacobian spectra at fixed points", STABILITY_COLUMNS)
    system, x, distinct = fixed_points(s.stability_n, s.stability_b, LOAD, s.device)
    model = system.model
    eng = measure(lambda: jacobian_eigenvalues(model, x), s.device, repeats=s.repeats)
    loop = measure(lambda: eigvals_loop(model.jacobian, x), s.device, repeats=s.repeats)
    eigs, route = eng.result
    diff, imag, ok = _spectra_agree(eigs, loop.result)
    n, B = x.shape[1], x.shape[0]
    base = {"N": n, "B": B, "device": str(s.device), "dtype": "float64"}
    for name, m, note in (("hopbench jacobian_eigenvalues", eng, f"route: {route} (batched eigvalsh)"),
                          ("loop of torch.linalg.eigvals", loop, "model.jacobian(x), then eigvals per point")):
        lo, hi = m.spread
        case.rows.append({**base, "implementation": name, "wall_s": m.median, "min_s": lo, "max_s": hi,
                          "hopbench_speedup": m.median / eng.median, "ms_per_point": m.median / B * 1e3,
                          "peak_mib": m.peak_mib, "other_cpu": m.other_cpu, "note": note})
    log(f"engine {eng.median:.3f} s, eigvals loop {loop.median:.3f} s")
    case.targets.append(Target(f"stability N=B={n}: jacobian_eigenvalues vs eigvals loop (≥ 5×)",
                               loop.median / eng.median, 5))
    case.notes += [f"{B} fixed points: the {distinct} distinct points ±ξ (P = {distinct // 2} stored patterns, "
                   "Newton-polished to 1e-10) repeated to fill the batch; eigensolver cost does not depend on it.",
                   f"spectra agree: max |Δ sorted Re λ| = {diff:.2e}, max |Im λ| of the general solver = {imag:.2e}"
                   f" → {'OK' if ok else 'MISMATCH'}"]
    return case


# 4. scaling ---------------------------------------------------------------------------------------------
SCALING_COLUMNS = ["N", "B", "device", "status", "wall_s", "ms_per_converged", "converged", "retrieved",
                   "nfe_per_traj", "peak_mib", "repeats", "estimate_s", "other_cpu", "note"]


def _free_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return math.inf


def _vector_field_seconds(prob: RetrievalProblem, device: torch.device) -> float:
    """Time of one vector-field call on the full batch: best of three, after one untimed call."""
    model = prob.system.model
    with torch.no_grad():
        model.vector_field(prob.x0)
        return min(timed(lambda: model.vector_field(prob.x0), device)[0] for _ in range(3))


def _scaling_one(s: Settings, n: int, b: int, overhead: float) -> dict[str, Any]:
    """One (N, B) combination; ``overhead`` = solver time / (EST_EVALS × vector-field time) seen so far."""
    row: dict[str, Any] = {"N": n, "B": b, "device": str(s.device)}
    need = BYTES_PER_STATE * n * b * 4
    if need > 0.5 * _free_bytes(s.device):
        return {**row, "status": "skipped", "note": f"needs ~{need / 2**30:.1f} GiB, over half the free memory"}
    prob = retrieval_problem(n, b, LOAD, s.device)
    t_vf = _vector_field_seconds(prob, s.device)
    est = EST_EVALS * t_vf * overhead
    row["estimate_s"] = est
    left = s.deadline - time.perf_counter()
    how = f"{EST_EVALS} evaluations × {t_vf * 1e3:.1f} ms × {overhead:.2f} solver overhead"
    if est * (1 + WARMUP_SHARE) > min(s.scaling_limit_s, left):
        limit = (f"the {s.scaling_limit_s:g} s limit per combination" if s.scaling_limit_s < left
                 else f"the {max(left, 0):.0f} s left of the run's time budget")
        return {**row, "status": "skipped",
                "note": f"estimated {est:.0f} s per integrate call ({how}); warm-up + 1 repeat would exceed {limit}"}
    repeats = max(1, min(s.repeats, int(min(s.scaling_limit_s, left) / est - WARMUP_SHARE)))
    model, cfg = prob.system.model, SolverConfig()
    short = replace(cfg, t_max=cfg.first_window)
    m = measure(lambda: integrate(model, prob.x0, cfg), s.device, repeats=repeats,
                warmup=lambda: integrate(model, prob.x0, short))
    traj = m.result
    conv = traj.counts()["converged"]
    log(f"N={n}, B={b}: {m.median:.3f} s ({repeats} repeats, estimate {est:.3f} s), {conv} converged")
    return {**row, "status": "ran", "wall_s": m.median, "ms_per_converged": m.median / conv * 1e3 if conv else math.nan,
            "converged": conv, "retrieved": retrieved(model.readout(traj.x), prob.targets).double().mean().item(),
            "nfe_per_traj": traj.nfe.double().mean().item(), "peak_mib": m.peak_mib, "repeats": repeats,
            "other_cpu": m.other_cpu, "overhead": m.median / (EST_EVALS * t_vf),
            "note": "fewer repeats (time budget)" if repeats < s.repeats else ""}


def scaling_case(s: Settings) -> CaseResult:
    case = CaseResult("scaling", f"4. Scaling: time per converged trajectory, α = {LOAD}", SCALING_COLUMNS)
    overhead = EST_OVERHEAD
    for n in s.scaling_n:
        for b in s.scaling_b:
            row = _scaling_one(s, n, b, overhead)
            overhead = row.get("overhead", overhead)  # the largest run so far predicts the next best
            if row["status"] == "skipped":
                print(f"  · N={n}, B={b}: skipped — {row['note']}", file=sys.stdout, flush=True)
                case.notes.append(f"skipped N={n}, B={b}: {row['note']}")
            case.rows.append(row)
    case.notes.append("Warm-up: one integrate call to t_max = 1 on the same batch; its peak memory is reported "
                      "(the batch is full in the first window). A combination runs when its estimated time (from "
                      "one vector-field call and the solver overhead of the previous combination) fits both the "
                      f"{s.scaling_limit_s:g} s per-combination limit and what is left of the run's time budget.")
    return case


# 8. endings: Newton finish, stalls, stiff systems ------------------------------------------------------------
ENDINGS_COLUMNS = ["problem", "configuration", "N", "B", "wall_s", "min_s", "max_s", "speedup", "nfe_per_traj",
                   "fewer_evaluations", *STATUSES, "newton_rows", "peak_mib", "other_cpu", "note"]
TAIL_LOAD = 0.12
T_MAX_ONLY = "newton_cost=1e12: at t_max only"
BOUND_ROWS = 64  # cues on which the bound of the Newton finish is measured
BOUND_STEP = 2.0  # time between the states of a trajectory that the bound tries a finish from


def _endings_row(problem: str, name: str, m: Measurement, base: Measurement, n: int, note: str) -> dict[str, Any]:
    traj, ref = m.result, base.result
    lo, hi = m.spread
    nfe = traj.nfe.double().mean().item()
    return {"problem": problem, "configuration": name, "N": n, "B": traj.x.shape[0], "wall_s": m.median,
            "min_s": lo, "max_s": hi, "speedup": base.median / m.median, "nfe_per_traj": nfe,
            "fewer_evaluations": ref.nfe.double().mean().item() / nfe, **traj.counts(),
            "newton_rows": int(traj.newton.sum()), "peak_mib": m.peak_mib, "other_cpu": m.other_cpu, "note": note}


def _seconds(value: float) -> str:
    """A measured difference of wall times, as text: '0.11 s', or no time where it is below the resolution."""
    return f"{value:.2f} s" if value >= 0.005 else "no measurable time"


def _same_end_states(model: Any, plain: Trajectories, fast: Trajectories) -> str:
    """Where each row ends, with and without the Newton finish: finished rows at the fixed point that the plain
    end state polishes to (float64), the other rows at the plain end state (up to the rounding of a matmul over a
    batch of another size), statuses equal but for former max_time rows."""
    done = fast.newton.cpu()
    m64 = model.to(dtype=torch.float64)
    limit = polish(m64, plain.x[done.to(plain.x.device)].double())
    polished = limit.converged.cpu()
    gap = (limit.x - fast.x[done.to(fast.x.device)].double()).abs().amax(-1).cpu()
    others = (fast.x[~done] - plain.x[~done]).abs().amax(-1).max().item() if bool((~done).any()) else 0.0
    late = (plain.status == STATUSES.index("max_time")).cpu()
    moved = {name: int((fast.status.cpu()[late] == i).sum()) for i, name in enumerate(STATUSES)}
    changed = int(((fast.status != plain.status).cpu() & ~late).sum())
    worst = float(gap.max()) if gap.numel() else 0.0
    ok = bool(polished.all()) and worst <= 1e-4 and others <= 1e-4 and changed == 0
    return (f"{int(done.sum())} rows finished by Newton: at the fixed point their plain end state polishes to "
            f"(max distance {worst:.1e}; plain polish converged on {int(polished.sum())}/{int(done.sum())}); other "
            f"rows: max |Δx| {others:.1e} from the plain run; statuses changed only on the {int(late.sum())} former "
            f"max_time rows → {moved} ({changed} other changes): {'OK' if ok else 'MISMATCH'}")


def finish_bound(model: Any, x0: Tensor, plain: Trajectories, rows: int = BOUND_ROWS) -> str:
    """The most that any Newton finish of the tail could save, measured on ``rows`` cues spread over the batch.

    For each cue, t* is the earliest time on a grid of BOUND_STEP from which, at every later grid time up to the
    row's plain end, :func:`finish` (a) is accepted (certified) with, or (b) merely finds (an oracle that knew
    where Newton lands), the fixed point that the plain end state polishes to (states from a float64 ``odeint``
    at rtol 1e-8). The finish's own cost is taken as zero and the integration it spares is measured: the
    evaluations of ``integrate`` with t_max = t* (none for t* = 0; the whole row where no finish qualifies).
    Whatever decides when to attempt a finish, and however cheap an attempt, the evaluations cannot drop below
    (a), nor below (b) for any Newton shortcut at all."""
    pick = torch.linspace(0, x0.shape[0] - 1, rows).round().long()
    m64 = model.to(dtype=torch.float64)
    start, end_t = x0[pick], plain.t[pick].double().cpu()
    limit = polish(m64, plain.x[pick.to(plain.x.device)].double())
    grid = torch.arange(0.0, float(end_t.max()) + BOUND_STEP, BOUND_STEP, dtype=torch.float64)
    with torch.no_grad():
        states = odeint(lambda _, x: m64.vector_field(x), start.double(), grid.to(start.device), rtol=1e-8,
                        atol=1e-9)
    t_star = {"certified": end_t.clone(), "oracle": end_t.clone()}
    # qualifies at every grid time tried so far, walking back from the end
    alive = {kind: limit.converged.cpu().clone() for kind in t_star}
    for k in reversed(range(grid.numel())):
        idx = ((alive["certified"] | alive["oracle"]) & (grid[k] <= end_t)).nonzero().squeeze(-1)
        if not idx.numel():
            continue
        x = states[k, idx.to(states.device)]
        done = finish(m64, x, m64.vector_field(x))
        there = ((done.x - limit.x[idx.to(x.device)]).abs().amax(-1) < 1e-6).cpu()
        for kind, ok in (("certified", done.accepted.cpu() & there), ("oracle", done.found.cpu() & there)):
            ok &= alive[kind][idx]
            t_star[kind][idx[ok]] = grid[k]
            alive[kind][idx[~ok]] = False
    plain_nfe = plain.nfe[pick].double().cpu()
    parts = []
    for kind, ts in t_star.items():
        left = plain_nfe.clone()
        for value in ts.unique().tolist():
            group = ((ts == value) & (ts < end_t)).nonzero().squeeze(-1)
            if group.numel():
                left[group] = 0.0 if value == 0 else integrate(
                    model, start[group.to(start.device)], SolverConfig(newton_finish=False, t_max=value)
                ).nfe.double().cpu()
        share = (ts / end_t).clamp(max=1.0)
        parts.append(f"({'a' if kind == 'certified' else 'b'}) {kind}: t*/T median {share.median().item():.2f}, "
                     f"90th percentile {share.quantile(0.9).item():.2f}, {left.mean().item():.0f} evaluations per "
                     f"trajectory, at most {plain_nfe.mean().item() / max(left.mean().item(), 1e-300):.2f}× fewer")
    return f"{rows} cues, {plain_nfe.mean().item():.0f} evaluations per trajectory plain; " + "; ".join(parts)


def _endings_runs(case: CaseResult, problem: str, model: Any, x0: Tensor,
                  runs: list[tuple[str, SolverConfig, str]], repeats: int) -> dict[str, Measurement]:
    """Time ``integrate`` under each configuration of ``runs`` (name, config, note); a row each, compared with
    the first."""
    measured: dict[str, Measurement] = {}
    for name, cfg, note in runs:
        measured[name] = m = measure(lambda cfg=cfg: integrate(model, x0, cfg), x0.device, repeats=repeats)
        log(f"{problem}, {name}: {m.median:.3f} s, {m.result.nfe.double().mean():.1f} evaluations per trajectory, "
            f"{m.result.counts()}, {int(m.result.newton.sum())} finished by Newton")
        case.rows.append(_endings_row(problem, name, m, measured[runs[0][0]], x0.shape[-1], note))
    return measured


def endings_case(s: Settings) -> CaseResult:
    case = CaseResult("endings", "8. Endings: Newton finish of slow tails, stalls, stiff systems", ENDINGS_COLUMNS)
    # (a) the slow tails of retrieval at α = 0.12
    prob = retrieval_problem(s.retrieval_n, s.retrieval_b, TAIL_LOAD, s.device)
    model, n = prob.system.model, prob.n
    problem = f"retrieval α={TAIL_LOAD}"
    runs = [("plain: newton_finish=False", SolverConfig(newton_finish=False), "every row integrated to ‖ẋ‖∞ < tol"),
            ("default: Newton finish", SolverConfig(), "attempts where the tail left costs more than an attempt"),
            (T_MAX_ONLY, SolverConfig(newton_cost=1e12), "no attempt before t_max; a row still moving there gets one"),
            ("newton_cost=0: every attempt", SolverConfig(newton_cost=0.0),
             "attempts at every halving of the speed below newton_speed")]
    measured = _endings_runs(case, problem, model, prob.x0, runs, s.repeats)
    plain = measured[runs[0][0]]
    for name, _, _ in runs[1:]:
        case.notes.append(f"{problem}, {name}: " + _same_end_states(model, plain.result, measured[name].result))
    default, at_end = measured[runs[1][0]], measured[T_MAX_ONLY]
    if not s.quick:
        note = finish_bound(model, prob.x0, plain.result)
        log(f"{problem}, bound of any Newton finish: {note}")
        case.notes.append(
            f"{problem}, the most a Newton finish of tails can save (from the earliest time t* at which a finish "
            f"(a) is certified or (b) lands on the plain end state, on a grid of {BOUND_STEP:g} time units, with "
            f"attempts free; T the plain end time): {note}. The rest is transit: "
            "trajectories drift between saddles (‖ẋ‖∞ 0.05–0.2, eigenvalues of J in [−1.4, 0.3], dopri5 steps "
            "of ~1.2 set by its accuracy, not by stiffness) long before any fixed point attracts them.")
    case.targets += [
        Target(f"{problem}, N=B={n}: evaluations per trajectory, plain / Newton finish (≥ 2×)",
               plain.result.nfe.double().mean().item() / default.result.nfe.double().mean().item(), 2),
        Target(f"{problem}, N=B={n}: wall time, {T_MAX_ONLY} / Newton finish (≥ 0.9: attempts before t_max "
               "cost under a tenth)", at_end.median / default.median, 0.9)]
    if resolved := int(at_end.result.newton.sum()):
        late = int((plain.result.status == STATUSES.index("max_time")).sum())
        extra = at_end.median - plain.median
        case.notes.append(
            f"{problem}: the default runs at {plain.median / default.median:.2f}× plain's speed. With attempts at "
            f"t_max only, {resolved} of plain's {late} max_time rows are resolved into converged fixed points by "
            f"their last attempt, for {extra:.2f} s ({1e3 * extra / resolved:.0f} ms per resolved row, refused "
            "attempts included: float64 LU and Cholesky factorisations of N × N matrices; plain integration leaves "
            f"them max_time); the attempts before t_max add {_seconds(default.median - at_end.median)}.")
    # (b) the stiff 6-neuron system of the Lyapunov check (modified_y, R = I − ΛWᵀ, GOE σ = 5), on the CPU
    # whatever --device: a GPU step costs milliseconds of launches whatever its size, which is why device=auto
    # keeps such a system there (on a GPU its first row, ~60 000 steps, would take minutes)
    system = compose(model="modified_y", strategy="y_i_minus_lambda_wt", activation="tanh",
                     activation_params={"beta": BETA}, weights="goe", weights_params={"sigma": 5.0}, n_neurons=6,
                     load=0.05, device="cpu")
    _, cues = make_cues(system, Flip(level=0.05), 80)
    stiff, y0 = system.model, system.model.initial_state(cues.to("cpu", system.dtype))
    problem = "stiff: N=6 modified_y, GOE σ=5"
    runs = [("dopri5, default", SolverConfig(), "early stall, Newton finish"),
            ("ros34pw2", SolverConfig(method="ros34pw2"), "Rosenbrock-W, order 3, L-stable")]
    if not s.quick:
        before = SolverConfig(early_stall=False, newton_finish=False)
        runs.insert(0, ("dopri5, before: no early stall, no Newton", before, "as hopbench before: crawls to t_max"))
    measured = _endings_runs(case, problem, stiff, y0, runs, 1)
    base, fast = measured[runs[0][0]], measured["ros34pw2"]
    case.targets.append(Target(f"{problem}: wall time, {runs[0][0]} / ros34pw2 (≥ 10×)", base.median / fast.median, 10))
    case.notes += [
        "fewer_evaluations and speedup compare with the first row of the same problem; nfe counts every "
        "evaluation: integration stages, residuals at checkpoints, Newton's residuals and Jacobians (one each); "
        "Newton's LU and Cholesky factorisations are not evaluations but are in the wall time.",
        f"{problem}: the cue batch of `task=lyapunov n_neurons=6 weights=goe weights.sigma=5 model=modified_y "
        "strategy=y_i_minus_lambda_wt` (80 cues, float32); its Jacobian has an eigenvalue near −900 and the flow "
        "runs into a stall (‖r‖∞ ≈ 0.3 where R is singular). Timed once (the first row takes tens of seconds)"
        + ("; on the CPU, as device=auto runs it." if s.device.type != "cpu" else ".")]
    return case
