#!/bin/sh
# predict_overhead and predict_memory for a base commit and for this tree, side by side in
# one invocation (alternating, so both see the same machine load). Each side runs its own
# copy of the benchmark scripts against its own rsseg (the base is unpacked with
# `git archive`; tiling/ and models/ are linked in as rsseg.tiling / rsseg.models).
#
#   sh benchmarks/before_after.sh BASE_COMMIT [OVERHEAD_SIZE] [MEMORY_SIZES] [ROUNDS]
set -eu
base=${1:?usage: before_after.sh BASE_COMMIT [OVERHEAD_SIZE] [MEMORY_SIZES] [ROUNDS]}
size=${2:-1024}
mem_sizes=${3:-1024,3072}
rounds=${4:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
git -C "$root" archive "$base" | tar -x -C "$before"
ln -s ../tiling "$before/rsseg/tiling"
ln -s ../models "$before/rsseg/models"
cd "$before"  # never the source tree: its rsseg/ would shadow PYTHONPATH
round=1
while [ "$round" -le "$rounds" ]; do
    for side in before after; do
        if [ "$side" = before ]; then tree=$before; else tree=$root; fi
        label=$side; [ "$side" = before ] && label="before ($base)"
        echo "== $label, round $round: predict_overhead --size $size"
        PYTHONPATH=$tree "$py" "$tree/benchmarks/predict_overhead.py" --size "$size" \
            --repeats 2 --threads 1
        echo "== $label, round $round: predict_memory --sizes $mem_sizes"
        PYTHONPATH=$tree "$py" "$tree/benchmarks/predict_memory.py" --sizes "$mem_sizes"
    done
    round=$((round + 1))
done
