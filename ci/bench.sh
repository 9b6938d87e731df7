#!/usr/bin/env bash
# The benchmark suite: bytecache against functools.lru_cache, joblib.Memory, diskcache and
# cachier on the same workloads, plus the Rust storage benches. Writes bench-report/report.md,
# bench-report/chart.png and bench-report/results.json. About 15-20 minutes.
#   bash ci/bench.sh              # full run
#   bash ci/bench.sh --quick      # smoke run (~3 min); other options: bench.py --help
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
. ci/env.sh 3.11
set +u
python -m pip install -q joblib diskcache cachier matplotlib pandas
# Children start as installed code does (pip compiles every tool's modules):
# from bytecode, not by compiling bytecache's sources in each new process.
unset PYTHONDONTWRITEBYTECODE
python -m compileall -q python/bytecache benches/python
OUT=bench-report
rm -rf "$OUT" && mkdir -p "$OUT"
# The Rust storage benches first (criterion's quick mode), so the report can include them.
if grep -q '^name = "storage"' Cargo.toml && [ -f benches/storage.rs ]; then
    echo "== cargo bench --bench storage -- --quick"
    if ! timeout 600 cargo bench --bench storage -- --quick >"$OUT/cargo-bench.txt" 2>&1; then
        echo "(cargo bench failed or timed out; see the end of this output)" >>"$OUT/cargo-bench.txt"
    fi
    grep -v '^\s*\(Compiling\|Downloaded\|Downloading\)' "$OUT/cargo-bench.txt" | tail -40
fi
# Argument hashing and fingerprinting (criterion, in an embedded interpreter).
echo "== cargo bench --features bench-python --bench identity -- --quick"
if ! PYO3_PYTHON=$(command -v python) \
    LD_LIBRARY_PATH=$(python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \
    timeout 600 cargo bench --features bench-python --bench identity -- --quick \
    >"$OUT/cargo-bench-identity.txt" 2>&1; then
    echo "(cargo bench failed or timed out; see the end of this output)" >>"$OUT/cargo-bench-identity.txt"
fi
grep -E '^[a-z].*|time:|thrpt:' "$OUT/cargo-bench-identity.txt" | grep -v '^\s*Compiling' | tail -20
# The store through Python beside diskcache: small get/put, 100 MiB in a new process,
# and a get among 1k vs 1M entries.
echo "== python benches/py_store.py (and --scale)"
python benches/py_store.py | tee "$OUT/py_store.json"
python benches/py_store.py --scale | tee "$OUT/py_store_scale.json"
echo "== python benches/first_hit.py (100 MiB result, first hit in a new process; vs joblib)"
python benches/first_hit.py | tee "$OUT/first_hit.txt"
if command -v redis-server >/dev/null 2>&1; then
    echo "== python benches/remote_hit.py (the remote tier over loopback Redis)"
    python benches/remote_hit.py | tee "$OUT/remote_hit.txt"
fi
if command -v valgrind >/dev/null 2>&1; then
    echo "== python benches/hit_instructions.py (instructions per hit vs lru_cache, callgrind)"
    python benches/hit_instructions.py --calls 5000 | tee "$OUT/hit_instructions.md"
fi
echo "== python benches/python/bench.py --out $OUT $*"
python benches/python/bench.py --out "$OUT" "$@"
# The figures of the standalone benches, appended as they printed them.
for part in "py_store.json:The store from Python, beside diskcache (benches/py_store.py)" \
            "py_store_scale.json:A get among 1 k and 1 M entries (benches/py_store.py --scale)" \
            "first_hit.txt:First hit of a 100 MiB result in a new process (benches/first_hit.py)" \
            "hit_instructions.md:Instructions per call, callgrind (benches/hit_instructions.py)" \
            "remote_hit.txt:The remote tier over loopback Redis (benches/remote_hit.py)"; do
    file=${part%%:*}
    if [ -s "$OUT/$file" ]; then
        printf '\n## %s\n\n```\n%s\n```\n' "${part#*:}" "$(cat "$OUT/$file")" >>"$OUT/report.md"
    fi
done
echo "report: $OUT/report.md  chart: $OUT/chart.png"
