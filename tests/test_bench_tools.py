"""The benchmark's own code runs: ``bench/run.py --quick`` (every CPU case at tiny sizes, in a fresh process) and
the engine profiler. Untimed: the speed targets are ``make bench``'s business; here the scripts must finish, write
every section, and their cross-checks (hopbench against scipy, odeint, exhaustive bisection and full spectra at
the same sizes) must agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, subprocess_env

CPU_CASES = ("retrieval", "roofline", "stability", "scaling", "extremal", "capacity", "threads", "endings")


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=subprocess_env(WANDB_MODE="disabled"),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_quick_benchmark_runs_every_case_and_its_cross_checks_agree(tmp_path: Path) -> None:
    report = tmp_path / "bench.md"
    proc = _run("bench/run.py", "--quick", "--out-dir", str(tmp_path), "--markdown", str(report), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    headings = re.findall(r"^## \d+\. .*$", text, flags=re.MULTILINE)
    assert len(headings) == len(CPU_CASES), headings
    assert {p.name for p in tmp_path.glob("*.csv")} >= {f"{case}_quick.csv" for case in CPU_CASES}
    assert "MISMATCH" not in text
    assert not re.search(r"(same outcomes|same verdicts|within one pattern): no", text)
    assert "| target | measured | threshold | met |" in text


@pytest.mark.parametrize(("backend", "windows"), [("rows", False), ("torchdiffeq", True)])
def test_engine_profiler_runs_on_both_backends(backend: str, windows: bool) -> None:
    proc = _run("bench/profile_engine.py", "--n", "32", "--batch", "16", "--repeats", "1", "--backend", backend,
                timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for section in ("1. integrate", "2. vector field", "3. first", "4. best of 1"):
        assert section in out
    assert ("   window " in out) == windows  # the torchdiffeq calls are listed for that backend only
    assert "{'converged': 16," in out
