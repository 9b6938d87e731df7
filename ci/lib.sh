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

# The servers the tests start on loopback ports of their own (tests/conftest.py):
# redis-server, from Debian's package. CI runs as root on a fresh machine;
# elsewhere, without root, the tests that need it are skipped.
install_test_servers() {
    command -v redis-server >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing redis-server (apt-get)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            redis-server >/dev/null
        # The package may start a system server; the tests never use it.
    else
        step "no redis-server and not root: the remote-tier tests will be skipped"
    fi
}
