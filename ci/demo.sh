#!/usr/bin/env bash
# The main job: a small data pipeline run twice in two processes; the second
# run is served from the cache; then one step is edited and only what depends
# on it recomputes. Works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/env.sh 3.11 >/dev/null
work=$(mktemp -d)
cp demo/pipeline.py "$work/"
export BYTECACHE_DIR="$work/cache"
echo "--- first run (computes every step)"
python "$work/pipeline.py"
echo "--- second run, a fresh process (served from the cache)"
python "$work/pipeline.py"
echo "--- after editing THRESHOLD (only fit recomputes)"
sed -i 's/^THRESHOLD = 0.5/THRESHOLD = 0.25/' "$work/pipeline.py"
python "$work/pipeline.py"
