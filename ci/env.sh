# Sourced by the ci/ scripts and by developers: a virtualenv per Python version
# with the pinned test tools and the extension built in release mode
# (maturin develop). Usage: . ci/env.sh [3.11|3.12|3.13]
# Progress goes to stderr: the first build takes a few minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=ci/lib.sh
. "$ROOT/ci/lib.sh"
VER=${1:-3.11}
PY=$(find_python "$VER") || { echo "no python$VER found" >&2; exit 1; }
VENV="$ROOT/.venv${VER/./}"
[ "$VER" = 3.11 ] && VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV (Python $VER)"
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
step "installing the test tools pinned in ci/constraints.txt"
python -m pip install -q --upgrade pip >/dev/null
install_test_tools >&2
install_test_servers
step "building bytecache for Python $VER (Rust, release; the first build takes 2-3 minutes)"
# Cargo's lines are the progress; maturin's banners and pip's chatter are not.
(cd "$ROOT" && maturin develop --release 2>&1 \
    | grep -v '^📦\|^🔗\|^🐍\|^🛠\|^🍹\|^📡\|^✏️\|^Looking in links\|^Ignoring ' >&2 || true)
python -c "import bytecache" # the build must have worked
step "ready: $VENV"
