"""Where hopbench's ``integrate`` spends its time (evidence for the notes in bench/RESULTS.md; not part of
``make bench``): ``python bench/profile_engine.py [--n 512] [--batch 512] [--alpha 0.05] [--backend rows]``.

1. Windows (``--backend torchdiffeq`` only): each torchdiffeq call of ``integrate`` (time span, active rows,
   evaluations, wall time), recorded by wrapping ``hopbench.solve.integrate.odeint`` in this process only.
2. Time split: vector-field time (model.vector_field) against everything else (stage arithmetic, error norms,
   the endings' checks), and with ``--profile`` the heaviest torch operators (torch.profiler).
3. Detection latency: when each trajectory first satisfies ‖ẋ‖∞ < tol (scipy's terminal event on a subset)
   against the time at which ``integrate`` reports it converged.
4. The best of a few timed runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/profile_engine.py` from anywhere

from bench.baselines import scipy_retrieval
from bench.workloads import BETA, RetrievalProblem, retrieval_problem, retrieved
from hopbench.solve import SolverConfig, Trajectories, integrate


# 1. windows ---------------------------------------------------------------------------------------------
def record_windows(model: object, x0: Tensor, cfg: SolverConfig) -> tuple[Trajectories, list[dict], float]:
    """Run ``integrate`` with every torchdiffeq call timed (the wrapper is removed afterwards)."""
    # the module, not the function of the same name that hopbench.solve exports
    solver_module = importlib.import_module("hopbench.solve.integrate")
    original = solver_module.odeint
    windows: list[dict] = []

    def wrapped(func: Callable, y0: Tensor, t: Tensor, **kwargs: object) -> Tensor:
        start = time.perf_counter()
        out = original(func, y0, t, **kwargs)
        windows.append({"t0": float(t[0]), "t1": float(t[-1]), "active": y0.shape[0], "nfe": func.nfe,
                        "seconds": time.perf_counter() - start})
        return out

    solver_module.odeint = wrapped
    try:
        start = time.perf_counter()
        out = integrate(model, x0, cfg)  # type: ignore[arg-type]
        total = time.perf_counter() - start
    finally:
        solver_module.odeint = original
    return out, windows, total


# 2. time split ------------------------------------------------------------------------------------------
def vector_field_seconds(model: object, x0: Tensor, cfg: SolverConfig) -> tuple[float, float, int]:
    """(total seconds, seconds inside model.vector_field, calls) of one integrate call."""
    inner = model.vector_field  # type: ignore[attr-defined]
    spent, calls = [0.0], [0]

    def timed_field(x: Tensor) -> Tensor:
        start = time.perf_counter()
        out = inner(x)
        spent[0] += time.perf_counter() - start
        calls[0] += 1
        return out

    model.vector_field = timed_field  # type: ignore[attr-defined]
    try:
        start = time.perf_counter()
        integrate(model, x0, cfg)  # type: ignore[arg-type]
        total = time.perf_counter() - start
    finally:
        del model.vector_field  # type: ignore[attr-defined]
    return total, spent[0], calls[0]


def top_operators(model: object, x0: Tensor, cfg: SolverConfig, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        integrate(model, x0, cfg)  # type: ignore[arg-type]
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# report -------------------------------------------------------------------------------------------------
def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    fn()
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def detection_latency(prob: RetrievalProblem, out: Trajectories, cfg: SolverConfig, cues: int) -> str:
    net = prob.system.net
    idx = torch.arange(0, prob.batch, max(1, prob.batch // cues))[:cues]
    run = scipy_retrieval(net.W.double().numpy(), net.b.double().numpy(), BETA, prob.x0[idx].double().numpy(), cfg)
    true_t = []
    for row in prob.x0[idx].double().numpy():  # scipy's event time: the first time ‖ẋ‖∞ < tol
        true_t.append(_event_time(net.W.double().numpy(), net.b.double().numpy(), row, cfg))
    t_true, t_hop = np.asarray(true_t), out.t[idx].numpy()
    where = "the accepted step where the check ends it" if cfg.row_wise else "window ends"
    ok = np.isfinite(t_true)
    return (f"first ‖ẋ‖∞ < tol (scipy event, {int(ok.sum())} converging cues): mean t = {t_true[ok].mean():.2f}; "
            f"integrate reports them at mean t = {t_hop[ok].mean():.2f} ({where}); scipy evaluations per cue "
            f"{run.evaluations.mean():.0f}, integrate nfe per cue {out.nfe[idx].double().mean():.0f}")


def _event_time(W: np.ndarray, b: np.ndarray, y0: np.ndarray, cfg: SolverConfig) -> float:
    from scipy.integrate import solve_ivp

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return W @ np.tanh(BETA * y) - y + b

    def settled(t: float, y: np.ndarray) -> float:
        return float(np.abs(rhs(t, y)).max()) - cfg.tol

    settled.terminal = True  # type: ignore[attr-defined]
    settled.direction = -1  # type: ignore[attr-defined]
    sol = solve_ivp(rhs, (0.0, cfg.t_max), y0, rtol=cfg.rtol, atol=cfg.atol, events=settled)
    return float(sol.t_events[0][0]) if len(sol.t_events[0]) else float("nan")


def stability_breakdown(n: int, batch: int, repeats: int) -> None:
    """Where ``jacobian_eigenvalues`` spends its time, against a leaner construction of the same matrix."""
    from bench.baselines import eigvals_loop
    from bench.workloads import fixed_points
    from hopbench.analysis.stability import jacobian_eigenvalues

    system, x, _ = fixed_points(n, batch, 0.05, torch.device("cpu"))
    model, W = system.model, system.net.W
    S = model.symmetric_jacobian(x)
    root = model.curvature(x).values.sqrt()
    timings = {
        "jacobian_eigenvalues (total)": lambda: jacobian_eigenvalues(model, x),
        "  model.symmetric_jacobian(x)": lambda: model.symmetric_jacobian(x),
        "  torch.linalg.eigvalsh(S)": lambda: torch.linalg.eigvalsh(S),
        "lean: eigvalsh(r_i W_ij r_j) − 1 (one (B,N,N) temporary)":
            lambda: torch.linalg.eigvalsh(root.unsqueeze(-1) * W * root.unsqueeze(-2)) - 1,
        "baseline: model.jacobian(x)": lambda: model.jacobian(x),
        "baseline: jacobian + eigvals loop": lambda: eigvals_loop(model.jacobian, x),
    }
    print(f"\nstability, N={n}, B={batch}, float64 (best of {repeats}):")
    for name, fn in timings.items():
        seconds, _ = best_of(fn, repeats)
        print(f"   {name:58s} {seconds:7.3f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", choices=("rows", "torchdiffeq"), default="rows",
                   help="solver.backend to profile (rows: the default for dopri5)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators")
    p.add_argument("--stability", action="store_true", help="only the stability breakdown (N = B = 256)")
    args = p.parse_args()
    if args.stability:
        stability_breakdown(256, 256, args.repeats)
        return
    cfg = SolverConfig(backend=args.backend)
    prob = retrieval_problem(args.n, args.batch, args.alpha, torch.device("cpu"))
    model = prob.system.model
    print(f"N={args.n}, B={args.batch}, α={args.alpha}, backend {args.backend}, torch threads "
          f"{torch.get_num_threads()}")

    integrate(model, prob.x0, cfg)
    out, windows, total = record_windows(model, prob.x0, cfg)
    print(f"\n1. integrate: {total:.3f} s, counts {out.counts()}, nfe per trajectory mean "
          f"{out.nfe.double().mean():.1f} max {int(out.nfe.max())}; {len(windows)} torchdiffeq calls")
    if windows:
        print("   window          active  nfe   seconds  ms/evaluation")
    for w in windows:
        print(f"   [{w['t0']:6.2f},{w['t1']:6.2f}]  {w['active']:6d}  {w['nfe']:4d}  {w['seconds']:7.3f}  "
              f"{1e3 * w['seconds'] / max(1, w['nfe']):8.3f}")

    total, inside, calls = vector_field_seconds(model, prob.x0, cfg)
    rest = ("the Runge–Kutta stage sums, error norms, step-size updates and the endings' checks"
            if args.backend == "rows" else "torchdiffeq's stage arithmetic, interpolation, hopbench's "
            "per-evaluation guard (isfinite/bound/where) and per-window set-up")
    print(f"\n2. vector field: {inside:.3f} s in {calls} model.vector_field calls = {inside / total:.0%} of "
          f"{total:.3f} s; the rest ({total - inside:.3f} s) is {rest}")
    if args.profile:
        print(top_operators(model, prob.x0, cfg))

    print("\n3. " + detection_latency(prob, out, cfg, cues=16))

    hop_s, hop = best_of(lambda: integrate(model, prob.x0, cfg), args.repeats)
    ok_h = retrieved(model.readout(hop.x), prob.targets)  # type: ignore[attr-defined]
    print(f"\n4. best of {args.repeats}: integrate {hop_s:.3f} s, nfe/traj {hop.nfe.double().mean():.1f}, "  # type: ignore[attr-defined]
          f"{hop.counts()}, retrieved {ok_h.double().mean():.4f}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
