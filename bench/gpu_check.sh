#!/usr/bin/env bash
# The GPU check in one call: on a machine with CUDA, (1) the test suite on the GPU (HOPBENCH_TEST_DEVICE=cuda),
# (2) `bench/run.py --device cuda` (with the N = B = 4096 retrieval case), (3) the full-size reproductions
# with device=cuda, all within 10 minutes (each step has a timeout taken from what is left), then
# bench/RESULTS_cuda.md: a table of the steps, the benchmark's tables and the reproductions' verdicts.
#
# No network is needed or used. The Python: $VENV/bin/python (default .venv) where that exists and its torch sees
# a GPU, else the machine's python3 (a GPU image's, with a CUDA torch). The packages that Python lacks come as
# wheels in .whl/ (made beforehand, where pip works, by `bash bench/gpu_wheels.sh`) and are installed into
# /tmp/hopbench-site first. The check stops at once, with advice, when torch sees no GPU.
#
#   bash bench/gpu_wheels.sh           # beforehand, on a machine with the package index
#   bash bench/gpu_check.sh            # on the GPU machine, from the repository root (or anywhere)
#   TOTAL_SECONDS=900 bash bench/gpu_check.sh
#   TOTAL_SECONDS=150 BENCH_ARGS=--quick REPROS=prop1 bash bench/gpu_check.sh   # a rehearsal
#
# Logs: bench/results/gpu_check/*.log; reproductions go to bench/results/gpu_check/reproductions/ (the CPU
# reproductions in reproductions/ are left alone).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$(pwd)
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
TOTAL=${TOTAL_SECONDS:-570}   # 10 minutes less a margin for start-up and the report
TESTS_S=${TESTS_SECONDS:-180}
BENCH_S=${BENCH_SECONDS:-220}
BENCH_ARGS=${BENCH_ARGS:-}   # e.g. --quick for a rehearsal of a few seconds
REPROS=${REPROS:-fig1 prop1 prop4 example7 dead_neurons hopfield_capacity prop3 critical_load}
LOGS=bench/results/gpu_check
RESULTS=bench/RESULTS_cuda.md
START=$(date +%s)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore

mkdir -p "$LOGS"
STEPS="$LOGS/steps.md"
printf '| step | status | seconds | log |\n|---|---|---|---|\n' > "$STEPS"

left() { echo $((TOTAL - ($(date +%s) - START))); }

# step NAME LIMIT CMD...: run CMD with a timeout of min(LIMIT, time left), log to $LOGS/NAME.log, add a row
step() {
    local name=$1 limit=$2 budget rc t0 status
    shift 2
    budget=$(left)
    ((budget < limit)) && limit=$budget
    if ((limit < 15)); then
        echo "| $name | skipped: out of time | 0 | - |" >> "$STEPS"
        echo "[$name] skipped: out of time"
        return 0
    fi
    echo "[$name] (timeout ${limit} s) $*"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out after ${limit} s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    echo "| $name | $status | $(($(date +%s) - t0)) | $LOGS/$name.log |" >> "$STEPS"
    echo "[$name] $status"
    tail -n 3 "$LOGS/$name.log"
}

if ! { [ -x "$PY" ] && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2> /dev/null; }; then
    PY=$(command -v python3 || true)
fi
if [ -z "$PY" ]; then
    echo "gpu_check: no Python (set VENV=... or put a python3 with a CUDA torch on the PATH)" >&2
    exit 2
fi
if compgen -G ".whl/*.whl" > /dev/null; then
    rm -rf /tmp/hopbench-site
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/hopbench-site \
        .whl/*.whl || exit 2
    export PYTHONPATH="$PYTHONPATH:/tmp/hopbench-site"
fi
if ! "$PY" -c "import hopbench.conf" 2> /dev/null; then
    # a checkout that is not installed: the configs (conf/, the package hopbench.conf) resolve only through the
    # install's package mapping, so install it in development mode (no network, no dependencies)
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 2
fi
echo "gpu_check: $PY"
if ! "$PY" - <<'EOF'
import sys

try:
    import torch
except ImportError:
    sys.exit(f"gpu_check: {sys.executable} has no torch; set VENV=... to a venv with a CUDA build of torch")
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} at {sys.executable} sees no CUDA device (CUDA build: "
             f"{torch.version.cuda or 'none'}). Run it where a CUDA torch and a GPU are, or install a CUDA build: "
             "<venv>/bin/pip install --index-url https://download.pytorch.org/whl/<cuda tag> torch==<version>")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF
then
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$LOGS/gpu.txt" 2> /dev/null ||
    "$PY" -c "import torch; print(torch.cuda.get_device_name(0))" > "$LOGS/gpu.txt" 2>&1

# 1. the tests that take the test device (tests.conftest.DEVICE, the device fixture) or CUDA itself, on the GPU
#    (the rest run on the CPU, as in CI), over 12 workers where pytest-xdist is; each test's verdict is logged
#    as it finishes and a test that runs over 60 s fails with its stack (pytest-timeout), so a step cut short by
#    its timeout still says which tests failed
mapfile -t TEST_FILES < <(grep -lE "conftest import .*\bDEVICE\b|\bdevice: torch\.device\b|torch\.cuda" tests/test_*.py)
EXTRA=()
"$PY" -c "import xdist" 2> /dev/null && EXTRA+=(-n 12)
"$PY" -c "import pytest_timeout" 2> /dev/null && EXTRA+=(--timeout 60)
step tests "$TESTS_S" env HOPBENCH_TEST_DEVICE=cuda "$PY" -m pytest -vv --tb=short -rfEs -p no:cacheprovider \
    --durations=15 "${EXTRA[@]}" "${TEST_FILES[@]}"

# 2. the benchmark on the GPU; its scaling case stops starting new sizes at the --budget
# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
step bench "$BENCH_S" "$PY" bench/run.py --device cuda --budget $((BENCH_S * 2 / 3)) --markdown "$LOGS/bench.md" \
    $BENCH_ARGS

# 3. full-size reproductions on the GPU, cheapest first, as long as time is left
for which in $REPROS; do
    step "repro_$which" 600 "$PY" -m hopbench.app.cli "experiment=repro_$which" full=true device=cuda logger=none \
        "task.out=$LOGS/reproductions" "hydra.run.dir=$LOGS/hydra/$which"
done

# the report
{
    echo "# hopbench on CUDA: tests, benchmark, full-size reproductions"
    echo
    echo "Generated by \`bash bench/gpu_check.sh\` on $(date -u '+%Y-%m-%d %H:%M:%S UTC') (git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)); GPU: $(cat "$LOGS/gpu.txt" 2>/dev/null)."
    echo "Total $(($(date +%s) - START)) s of a ${TOTAL} s budget."
    echo
    echo "## Steps"
    echo
    cat "$STEPS"
    echo
    echo "## Tests (HOPBENCH_TEST_DEVICE=cuda)"
    echo
    echo '```'
    grep -E "FAILED|ERROR|^SKIPPED|[0-9]+ (passed|failed)|Timeout" "$LOGS/tests.log" 2> /dev/null | cut -c1-240 | tail -n 40
    echo '```'
    echo
    echo "## Benchmark (bench/run.py --device cuda)"
    echo
    if [ -s "$LOGS/bench.md" ]; then sed '1s/^# /### /' "$LOGS/bench.md"; else echo "(no benchmark report: see $LOGS/bench.log)"; fi
    echo
    echo "## Full-size reproductions (device=cuda)"
    echo
    "$PY" - "$LOGS/reproductions" <<'EOF'
import json
import sys
from pathlib import Path

docs = sorted(Path(sys.argv[1]).glob("*/verdict.json"))
if not docs:
    print("(none finished)")
print("| reproduction | claims passed | time s |\n|---|---|---|")
for path in docs:
    d = json.loads(path.read_text())
    print(f"| {d['name']} | {sum(c['passed'] for c in d['claims'])} of {len(d['claims'])} | {d['time_s']:.1f} |")
EOF
} > "$RESULTS"
echo "wrote $RESULTS ($(($(date +%s) - START)) s)"
