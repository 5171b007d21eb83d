#!/usr/bin/env bash
# Before a GPU check, on a machine with pip access to the package index: download the wheels listed in
# bench/gpu_wheels.txt (Python 3.12, manylinux x86-64) into .whl/ at the repository root, which git ignores
# (.gitignore). bench/gpu_check.sh installs them on the GPU machine (which has no network), so the
# whole check is one command there:
#
#   bash bench/gpu_wheels.sh                # here
#   bash bench/gpu_check.sh                 # there, with .whl carried along
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
grep -Ev '^[[:space:]]*(#|$)' bench/gpu_wheels.txt | while read -r req; do
    # a binary wheel for the GPU machine's Python; else (sdist only, e.g. antlr4-python3-runtime 4.9.3, which
    # hydra-core 1.3 pins) a pure-Python wheel built here
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$req" 2> /dev/null || python3 -m pip wheel -q --no-deps -w .whl "$req"
done
# a wheel built here for another Python than the GPU machine's would be refused there
if find .whl -type f -name '*.whl' | grep -Ev -- '-(py2\.py3-none-any|py3-none-any|py3-none-manylinux[^/]*|cp312-[^/]*|cp3[0-9]+-abi3-[^/]*)\.whl$'; then
    echo "gpu_wheels: the wheels above do not fit the GPU machine's Python 3.12" >&2
    exit 1
fi
echo "$(find .whl -type f -name '*.whl' | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/"
