"""hopbench benchmark : `make bench`, or `python bench/run.py [--quick] [--device cuda]`.

Cases: (1) retrieval of 5 %-flipped cues with hopbench's ``integrate`` against a per-cue scipy ``solve_ivp``
script and a one-call full-batch torchdiffeq ``odeint`` script, at α = 0.05 and 0.12; (2) roofline: the
vector field's throughput against a bare matmul; (3) stability: batched symmetric Jacobian spectra against a
loop of general eigensolvers; (4) scaling over N × B; on CUDA also (1b) retrieval at N = B = 4096; (5) stability
verdicts from Lanczos bounds against full spectra; (6) the capacity search against bisection over [1, N];
(7) one thread against all cores (bench/search_cases.py); (8) endings: the Newton finish of slow tails at
α = 0.12 and a stiff 6-neuron system under dopri5 and ros34pw2.

Prints a table; writes ``bench/results/<case>[_cuda|_quick].csv`` and ``bench/RESULTS.md``
(``bench/RESULTS_cuda.md`` on CUDA; no markdown for --quick unless --markdown is given).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/run.py` from any folder

from bench.cases import (
    CaseResult,
    Settings,
    endings_case,
    gpu_retrieval_case,
    retrieval_case,
    roofline_case,
    scaling_case,
    settings_for,
    stability_case,
    warm_up,
)
from bench.harness import Contention, machine_info
from bench.search_cases import capacity_case, extremal_case, threads_case
from bench.tables import markdown_report, text_report, write_csvs

HERE = Path(__file__).resolve().parent
IDLE = 0.10  # other processes' CPU share above which the machine counts as busy


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: a smoke test of a few seconds")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the torch code runs")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 3; quick 1)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results", help="folder for the CSV files")
    p.add_argument("--markdown", type=Path, default=None,
                   help="summary file (default bench/RESULTS.md, bench/RESULTS_cuda.md on CUDA; none with --quick)")
    p.add_argument("--budget", type=float, default=480.0, metavar="SECONDS",
                   help="time budget of the run: scaling combinations that would overrun it are skipped")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for other processes to leave the CPU before measuring")
    p.add_argument("--only", nargs="+", default=None,
                   choices=["retrieval", "retrieval_gpu", "roofline", "stability", "scaling", "extremal", "capacity",
                            "threads", "endings"],
                   help="run only these cases")
    return p.parse_args(argv)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine (torch "
                         f"{torch.__version__}); run without --device to benchmark the CPU")
    return torch.device(name)


def check_idle(wait: float) -> float:
    """Other processes' share of the CPU over the last second, waiting up to ``wait`` s for it to drop."""
    deadline = time.perf_counter() + wait
    while True:
        probe = Contention()
        time.sleep(1.0)
        share = probe.share()
        if not share > IDLE or time.perf_counter() >= deadline:
            return share
        print(f"  other processes use {share:.0%} of the CPU; waiting for an idle machine", flush=True)


def run_cases(s: Settings, only: list[str] | None,
              on_case: Callable[[list[CaseResult], int], None]) -> list[CaseResult]:
    """Run the planned cases in order; after each, ``on_case(results so far, cases planned)`` saves them, so a
    run stopped part-way (a time limit on a borrowed GPU machine) still leaves the finished cases' report."""
    plan = [("retrieval", retrieval_case)]
    if s.device.type == "cuda":
        plan.append(("retrieval_gpu", gpu_retrieval_case))
    plan += [("roofline", roofline_case), ("stability", stability_case), ("scaling", scaling_case),
             ("extremal", extremal_case), ("capacity", capacity_case), ("threads", threads_case),
             ("endings", endings_case)]
    plan = [(name, case) for name, case in plan if only is None or name in only]
    results: list[CaseResult] = []
    for name, case in plan:
        print(f"[{name}]", flush=True)
        start = time.perf_counter()
        results.append(case(s))
        print(f"  ({time.perf_counter() - start:.1f} s)", flush=True)
        on_case(results, len(plan))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    info = machine_info(device)
    print(f"hopbench benchmark on {device} ({info['cpu']}, {info['cpu_cores_usable']} cores, "
          f"torch {info['torch']}, torch.get_num_threads() = {info['torch_threads']})", flush=True)
    busy = check_idle(args.wait_idle)
    info["other_cpu_at_start"] = f"{busy:.0%}"
    if busy > IDLE:
        print(f"WARNING: other processes use {busy:.0%} of the CPU; timings will be disturbed "
              "(try --wait-idle 600)", flush=True)
    start = time.perf_counter()  # the budget and the reported total start here, after any wait
    s = settings_for(device, args.quick, args.repeats, start + args.budget)
    info["mode"] = "quick" if s.quick else "full"
    info["repeats"] = f"{s.repeats} timed (median) after 1 warm-up"
    print("[warm-up]", flush=True)
    warm_up(s)
    suffix = ("_cuda" if device.type == "cuda" else "") + ("_quick" if s.quick else "")
    markdown = args.markdown
    if markdown is None and not s.quick:
        markdown = HERE / ("RESULTS_cuda.md" if device.type == "cuda" else "RESULTS.md")
    command = ("python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)).strip()

    csvs: list[Path] = []

    def save(done: list[CaseResult], planned: int) -> None:
        csvs[:] = write_csvs(info, done, args.out_dir, suffix)
        if markdown is not None:
            tmp = markdown.with_name(markdown.name + ".tmp")
            tmp.write_text(markdown_report(info, done, time.perf_counter() - start, command, planned))
            tmp.replace(markdown)

    cases = run_cases(s, args.only, save)
    if not cases:  # nothing planned: the machine's files and an empty report all the same
        save(cases, 0)
    print(text_report(info, cases, time.perf_counter() - start))
    if markdown is not None:
        print(f"wrote {markdown}")
    print("wrote " + ", ".join(str(p) for p in csvs))
    print(f"total elapsed: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
