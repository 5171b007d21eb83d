#!/usr/bin/env bash
# Before a GPU check, on a machine with pip access to the package index: download the wheels listed in
# bench/gpu_wheels.txt (Python 3.12, manylinux x86-64) into .whl/ at the repository root, which git ignores
# through .git/info/exclude. bench/gpu_check.sh installs them on the GPU machine (which has no network), so the
# whole check is one command there:
#
#   bash bench/gpu_wheels.sh                # here
#   bash bench/gpu_check.sh                 # there, with .whl carried along
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2> /dev/null || echo '/.whl/' >> .git/info/exclude
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
for req in $(grep -v '^#' bench/gpu_wheels.txt | grep -v '^$'); do
    # a binary wheel for the GPU machine's Python; else (sdist only, e.g. antlr4-python3-runtime 4.9.3, which
    # hydra-core 1.3 pins) a pure-Python wheel built here
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$req" 2> /dev/null || python3 -m pip wheel -q --no-deps -w .whl "$req"
done
echo "$(find .whl -type f -name '*.whl' | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
