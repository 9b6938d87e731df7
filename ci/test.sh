#!/usr/bin/env bash
# All tests: lint, Rust tests, then the Python suite on every supported
# CPython (real interpreters in fresh processes). Works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/env.sh 3.11
echo "== lint"
cargo fmt --check
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q --all-targets --features python -- -D warnings
PYO3_PYTHON=$(command -v python) cargo clippy -q --benches --features bench-python -- -D warnings
ruff check python tests demo benches
python -m mypy.stubtest bytecache._bytecache
echo "== cargo test"
cargo test -q --release 2>&1 | tail -n 30
for v in ${BYTECACHE_TEST_PYTHONS:-3.11 3.12 3.13}; do
    echo "== pytest on Python $v"
    . ci/env.sh "$v"
    if [ "$v" != 3.11 ]; then
        # src/cpython/ compiles other code for each version: lint that too.
        PYO3_PYTHON=$(command -v python) CARGO_TARGET_DIR=target/clippy-$v \
            cargo clippy -q --all-targets --features python -- -D warnings
    fi
    python -m pytest -q -p no:cacheprovider tests
done
