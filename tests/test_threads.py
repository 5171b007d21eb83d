"""The thread budget (hopbench.threads) and the thread-state crash it replaces, in fresh processes.

torch 2.13's CPU build: after ``torch.set_num_threads(n ≥ 2)`` a batched ``torch.linalg.solve_ex`` at N = 200
fails ("Pivots given to lu_solve …") or hangs. A long pytest process never sees it at small N, so these tests
start new interpreters, as a sweep's jobs and a user's command do.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hopbench import threads
from tests.conftest import ROOT, subprocess_env

ENV = subprocess_env(WANDB_MODE="disabled")


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=ROOT)


def test_no_module_sets_torch_threads() -> None:
    """The root cause stays out: nothing in the package calls torch.set_num_threads."""
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "hopbench").rglob("*.py")
                 if "set_num_threads(" in p.read_text() and p.name != "threads.py"]
    assert offenders == []
    assert "torch.set_num_threads(" not in (ROOT / "hopbench" / "threads.py").read_text().replace(
        "``torch.set_num_threads(n)``", "")


def test_solve_after_threaded_eigvalsh_in_a_fresh_process() -> None:
    """The issue's reproduction through hopbench's own code: a batch-split eigvalsh over a 2-thread budget,
    the budget changed again, then a batched solve at N = 200 (Newton polish) — no pivots error, exact answer."""
    result = _python("""
        import torch
        from hopbench import threads
        from hopbench.analysis import stability
        stability.SPLIT_WORK = 0
        gen = torch.Generator().manual_seed(0)
        A = torch.randn(64, 100, 100, generator=gen, dtype=torch.float64)
        with threads.job_budget(2):
            eigs = stability.eigvalsh(A + A.mT)
        with threads.job_budget(2):
            M = torch.randn(10, 200, 200, generator=gen, dtype=torch.float64) + 20 * torch.eye(200, dtype=torch.float64)
            rhs = torch.randn(10, 200, 1, generator=gen, dtype=torch.float64)
            x, info = torch.linalg.solve_ex(M, rhs)
        assert int(info.abs().sum()) == 0
        assert float((M @ x - rhs).abs().max()) < 1e-10
        torch.testing.assert_close(eigs, torch.linalg.eigvalsh(A + A.mT))
        print("ok")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "oneMKL ERROR" not in result.stderr
    assert result.stdout.strip() == "ok"


def test_job_budget_sets_and_restores_the_thread_count() -> None:
    before = threads.budget()
    with threads.job_budget(1):
        assert threads.budget() == 1
    assert threads.budget() == before


def test_auto_gives_small_problems_one_thread_and_larger_ones_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "idle_cores", lambda: 8.0)
    assert threads.choose("auto", threads.JOB_THREADS_FROM - 1) == 1
    assert threads.choose("auto", threads.JOB_THREADS_FROM) == 8
    monkeypatch.setattr(threads, "idle_cores", lambda: 2.8)  # other processes keep 5.2 cores busy
    assert threads.choose("auto", 4096) == 3
    monkeypatch.setattr(threads, "idle_cores", lambda: 0.6)  # less than one core left: one thread
    assert threads.choose("auto", 4096) == 1
    assert threads.choose(3, 10) == 3


def test_idle_cores_sees_a_busy_neighbour(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process spinning on one core leaves at most cores − ½ idle (measured afresh, not from the cache); this
    process's own work does not count as another's."""
    if threads._busy_seconds() is None:
        pytest.skip("no /proc/stat on this system: idle_cores assumes every core is idle")
    monkeypatch.setattr(threads, "_idle_seen", None)
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.idle_cores()
    finally:
        proc.kill()
        proc.wait()
    assert busy <= threads.available_cores() - 0.5
    assert threads.idle_cores() == busy  # reused within IDLE_REUSE_S


def _hopbench(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hopbench.app.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd)


@pytest.mark.slow
def test_compare_at_n300_finishes_in_a_fresh_process(tmp_path: Path) -> None:
    """``hopbench compare=true n_neurons=300`` exited 1 with the pivots error before the budget helper."""
    out = tmp_path / "run"
    result = _hopbench("compare=true", "n_neurons=300", "logger=none", "spurious.n_states=40",
                       "lyapunov.n_states=30", f"hydra.run.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "ok"
    assert set(results["comparison"]) == {"original", "modified"}


@pytest.mark.slow
def test_two_job_sweep_at_n300_in_fresh_processes(tmp_path: Path) -> None:
    """Both jobs of a sweep at N = 300 finish ok (job 1 failed every time before)."""
    out = tmp_path / "sweep"
    result = _hopbench("-m", "seed=0,1", "n_neurons=300", "load=0.1", "logger=none", "spurious.n_states=40",
                       "lyapunov.n_states=30", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = [json.loads(p.read_text())["status"] for p in sorted(out.rglob("results.json"))]
    assert statuses == ["ok", "ok"]


def test_batched_lu_is_right_after_the_caller_sets_torch_threads() -> None:
    """A user's script may call torch.set_num_threads(2), which breaks torch's batched LU from ~150 rows (garbage
    pivots, a crash or a hang). hopbench's LU (``threads.lu_factor``), its Newton polish (one LU per row) and the
    Rosenbrock step stay exact: checked against the one-matrix factorisation and a residual."""
    result = _python("""
        import torch
        from hopbench import threads
        torch.set_num_threads(1)
        torch.set_num_threads(2)
        gen = torch.Generator().manual_seed(0)
        A = torch.randn(6, 200, 200, generator=gen, dtype=torch.float64)
        LU, pivots, info = threads.lu_factor(A)
        for i in range(6):
            one = torch.linalg.lu_factor_ex(A[i])
            assert torch.equal(pivots[i], one.pivots) and torch.equal(LU[i], one.LU), i
        rhs = torch.randn(6, 200, 1, generator=gen, dtype=torch.float64)
        x = torch.linalg.lu_solve(LU, pivots, rhs)
        assert int(info.abs().sum()) == 0 and float((A @ x - rhs).abs().max()) < 1e-8
        from hopbench import compose
        from hopbench.solve import polish
        system = compose(n_neurons=200, load=0.05, weights="hebbian", activation="tanh", dtype="float64")
        model = system.model
        out = polish(model, model.initial_state(system.data.patterns[:4]))
        assert bool(out.converged.all()), out.residual
        print("ok")
    """, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
