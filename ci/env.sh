# Sourced by the ci/ scripts: a virtualenv per Python version with the
# extension built in release mode. Usage: . ci/env.sh [3.11|3.12|3.13]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VER=${1:-3.11}
find_python() {
    local v=$1 p
    for p in "python$v" "$HOME/.pyenv/versions/$v"*/bin/python3 "/root/.pyenv/versions/$v"*/bin/python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(0)' 2>/dev/null; then
            command -v "$p"; return 0
        fi
    done
    return 1
}
PY=$(find_python "$VER") || { echo "no python$VER found" >&2; exit 1; }
VENV="$ROOT/.venv${VER/./}"
[ "$VER" = 3.11 ] && VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q maturin pytest numpy pandas toolz ruff mypy typing_extensions ipykernel nbclient nbformat coverage
(cd "$ROOT" && maturin develop --release -q 2>&1 | grep -v '^📦\|^🔗\|^🐍\|^🛠' || true)
python -c "import bytecache" # the build must have worked
