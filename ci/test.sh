#!/usr/bin/env bash
# All tests: build the manylinux wheels (ci/wheels.sh), then for every
# supported CPython install its wheel into a fresh virtualenv with the pinned
# test tools and run the Python suite against it (real interpreters in fresh
# processes); lint and the Rust tests once. Works on a fresh machine.
#   BYTECACHE_TEST_PYTHONS="3.11" bash ci/test.sh   # one version
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=ci/lib.sh
. ci/lib.sh
VERSIONS=${BYTECACHE_TEST_PYTHONS:-3.11 3.12 3.13}
SECONDS=0
# The disk is shared: say what was free, so that a run that runs out of space
# says so at the top (the build outputs, one virtualenv and the tests' files:
# about 5 GB at the peak).
df -h . /tmp | sed 's/^/   /'
install_test_servers
echo "== wheels ($VERSIONS)"
# shellcheck disable=SC2086
bash ci/wheels.sh $VERSIONS
echo "   (${SECONDS}s)"
first=1
for v in $VERSIONS; do
    venv=$ROOT/.venv-wheel${v/./}
    echo "== Python $v: a fresh virtualenv with the wheel and the pinned test tools"
    rm -rf "$venv"
    "$(find_python "$v")" -m venv "$venv"
    # shellcheck disable=SC1091
    . "$venv/bin/activate"
    python -m pip install -q --upgrade pip >/dev/null
    install_test_tools dist/bytecache-*-cp"${v/./}"-*.whl
    python -c 'import bytecache, sys; print("   bytecache", bytecache.__version__, "from", bytecache.__file__)'
    if [ "$first" = 1 ]; then
        first=0
        echo "== lint"
        cargo fmt --check
        cargo clippy -q --all-targets -- -D warnings
        cargo clippy -q --all-targets --features python -- -D warnings
        PYO3_PYTHON=$(command -v python) cargo clippy -q --benches --features bench-python -- -D warnings
        ruff check python tests demo benches
        python -m mypy --strict python/bytecache
        python -m mypy.stubtest bytecache._bytecache
        echo "== cargo test"
        cargo test -q --release 2>&1 | tail -n 30
        # The unit tests of the extension's own modules (digest, marking).
        cargo test -q --release --features python --lib 2>&1 | tail -n 5
    fi
    if [ "$v" != "${VERSIONS%% *}" ]; then
        # src/cpython/ compiles other code for each version: lint that too.
        PYO3_PYTHON=$(command -v python) CARGO_TARGET_DIR=target/clippy-$v \
            cargo clippy -q --all-targets --features python -- -D warnings
    fi
    echo "== pytest on Python $v (the installed wheel)   (${SECONDS}s so far)"
    # Real libraries' suites under bytecache take minutes: on the first version only.
    real=0
    [ "$v" = "${VERSIONS%% *}" ] && real=1
    BYTECACHE_TEST_WHEEL=1 BYTECACHE_REAL_LIBRARIES=$real python -m pytest -q -p no:cacheprovider tests
    deactivate
    rm -rf "$venv"
done
echo "== done in ${SECONDS}s"
