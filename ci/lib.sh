# Sourced by the ci/ scripts: finding interpreters and installing the pinned
# test and lint tools.

# The python3 of CPython VERSION (3.11, ...): on PATH, else from pyenv.
find_python() {
    local v=$1 p
    for p in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python3 "/root/.pyenv/versions/$v"*/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0)' 2>/dev/null; then
            command -v "$p"; return 0
        fi
    done
    return 1
}

# A progress line on stderr (stdout may be discarded, as ci/demo.sh does).
step() {
    echo "bytecache: $*" >&2
}

# The names of pyproject.toml's `test` extra, one per line.
test_requirements() {
    python - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["test"]))
PY
}

# Into the active virtualenv: the test extra and the build tools, at the
# versions ci/constraints.txt pins. Extra arguments are installed too.
install_test_tools() {
    local reqs
    reqs=$(test_requirements)
    # shellcheck disable=SC2086
    python -m pip install -q -c "$ROOT/ci/constraints.txt" maturin $reqs "$@"
}
