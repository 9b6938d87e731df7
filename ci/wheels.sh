#!/usr/bin/env bash
# manylinux2014 (glibc >= 2.17) wheels of bytecache for CPython 3.11-3.13 in
# dist/, built without a container: maturin links with zig from the `ziglang`
# package. Needs Rust and the interpreters (PATH or pyenv).
#   bash ci/wheels.sh              # 3.11 3.12 3.13
#   bash ci/wheels.sh 3.12         # one version
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=ci/lib.sh
. ci/lib.sh
VERSIONS=${*:-3.11 3.12 3.13}
BUILD=$ROOT/.venv-build
if [ ! -x "$BUILD/bin/python" ]; then
    "$(find_python 3.11)" -m venv "$BUILD"
fi
"$BUILD/bin/python" -m pip install -q -c ci/constraints.txt maturin ziglang
interpreters=()
for v in $VERSIONS; do
    interpreters+=(-i "$(find_python "$v")")
done
rm -rf dist
step "building wheels for $VERSIONS (Rust, release, linked by zig for manylinux_2_17)"
# maturin finds zig as `python -m ziglang` of the python on PATH.
PATH="$BUILD/bin:$PATH" maturin build --release --strip --zig --compatibility manylinux_2_17 \
    "${interpreters[@]}" --out dist 2>&1 | grep -v '^\s*Compiling ' >&2
ls dist/*.whl
