#!/bin/sh
# Mutation smoke test: does the suite notice when a line that matters is wrong?
#
# Each mutation below flips one named line of the library IN A TEMPORARY COPY of the
# tree (the checkout is never touched), runs only the test files that cover it, and
# expects them to FAIL. The script exits non-zero if any mutation survives (its tests
# still pass), if a line to flip is no longer found exactly once (the code moved: update
# the table), or if the unmutated copy does not pass the same tests.
#
# Slow (a few minutes): `make mutation`, not part of `make test`. Results: docs/testing.md.
# Usage: sh scripts/mutation_smoke.sh [NAME...]   (default: every mutation)
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}

# name | file | exact line (stripped) | replacement | test files (space separated)
MUTATIONS='blend-normalisation|tiling/weights.py|return [w / total[s:s + size] for w, s in zip(weights, starts)]|return [w for w, s in zip(weights, starts)]|tests/tiling/test_tiling.py tests/predict/test_pipeline.py
score-ignore-mask|rsseg/score/scene_pair.py|labels[missing] = opts.ignore_index|pass|tests/score/test_score.py
seam-merge|rsseg/vectorize/seams.py|component = _components(self._count, keys, owners)|component = np.arange(self._count)|tests/vectorize/test_vectorize.py
nodata-mask|rsseg/predict/sinks.py|cls[~valid] = NODATA|pass|tests/predict/test_pipeline.py
atomic-rename|rsseg/atomic.py|os.replace(tmp, final)|os.link(tmp, final)|tests/cli/test_core.py'

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rsseg-mutation.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT INT TERM

# A copy of the working tree (tracked and new files, as they are now), importable as
# `rsseg` from PYTHONPATH ahead of the editable install: rsseg.tiling and rsseg.models
# live in top-level folders, so the copy links them into its rsseg/.
copy_tree() {
    dst=$1
    mkdir -p "$dst"
    git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c \
        'test -e "$1" && mkdir -p "$2/$(dirname "$1")" && cp -p "$1" "$2/$1"' _ {} "$dst"
    ln -s ../tiling "$dst/rsseg/tiling"
    ln -s ../models "$dst/rsseg/models"
}

# Replace the one line whose stripped text is $2 in file $1 by $3 (same indentation).
flip_line() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import sys
path, old, new = sys.argv[1:]
lines = open(path).read().split("\n")
hits = [i for i, line in enumerate(lines) if line.strip() == old]
if len(hits) != 1:
    sys.exit(f"{path}: expected the line {old!r} once, found it {len(hits)} time(s)")
i = hits[0]
lines[i] = lines[i][:len(lines[i]) - len(lines[i].lstrip())] + new
open(path, "w").write("\n".join(lines))
EOF
}

run_tests() {  # $1: tree, rest: test files; prints pytest's last line, returns its status
    tree=$1
    shift
    log=$tree.log
    (cd "$tree" && PYTHONPATH="$tree" OMP_NUM_THREADS=1 "$PY" -m pytest -x -q \
        -p no:cacheprovider "$@" >"$log" 2>&1)
    rc=$?
    tail -n 1 "$log"
    return $rc
}

selected() {  # is mutation $1 among the names given on the command line (or none given)?
    [ -z "$WANTED" ] && return 0
    for w in $WANTED; do [ "$w" = "$1" ] && return 0; done
    return 1
}

WANTED="$*"
BASE=$WORK/base
copy_tree "$BASE"
where=$(cd "$WORK" && PYTHONPATH="$BASE" "$PY" -c \
    'import rsseg, rsseg.tiling; print(rsseg.__file__, rsseg.tiling.__file__)')
case "$where" in
    "$BASE"/rsseg/*" $BASE"/rsseg/tiling/*) ;;
    *) echo "mutation_smoke: the copy is not what Python imports ($where)" >&2; exit 1 ;;
esac

echo "$MUTATIONS" | while IFS='|' read -r name file old new tests; do
    selected "$name" || continue
    tree=$WORK/$name
    cp -a "$BASE" "$tree"
    # shellcheck disable=SC2086 - the test list is split on purpose
    if ! clean=$(run_tests "$BASE" $tests); then
        echo "ERROR     $name: the unmutated tree fails its tests: $clean" >&2
        exit 1
    fi
    flip_line "$tree/$file" "$old" "$new" || exit 1
    start=$(date +%s)
    # shellcheck disable=SC2086
    if result=$(run_tests "$tree" $tests); then
        echo "SURVIVED  $name ($file: '$old' -> '$new'): $tests still pass"
        exit 1
    fi
    echo "caught    $name ($file: '$old' -> '$new') in $(( $(date +%s) - start )) s by $tests: $result"
    rm -rf "$tree" "$tree.log"
done
status=$?
[ $status -eq 0 ] && echo "mutation_smoke: every mutation was caught" ||
    echo "mutation_smoke: FAILED (see above)" >&2
exit $status
