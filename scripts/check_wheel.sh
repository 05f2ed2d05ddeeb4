#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it (not editable) into a fresh venv under
# the constraints file, and run every subcommand from outside the checkout. An editable dev
# install hides packaging mistakes (missing package data, an import that only works because
# something else imported it first); this check does not.
#
#   scripts/check_wheel.sh            # PYTHON=python3 by default
#
# Exit 0 only if every step succeeds; the failing step is named on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/rsseg-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { echo "check_wheel: $*" >&2; }
# A command's output goes to a log, shown only when it fails.
run() { "$@" >>"$work/log" 2>&1 || { step "FAILED: $*"; cat "$work/log" >&2; exit 1; }; }

# Build from a copy of the working tree (tracked + untracked, not ignored files), so the
# build leaves no build/ or *.egg-info behind in the checkout.
step "copying the source tree"
mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 tar -c --ignore-failed-read 2>/dev/null) | tar -x -C "$work/src"

step "building the wheel"
"$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/rsseg-*.whl)

step "installing $(basename "$wheel") into a fresh venv"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$work/venv/bin/python" -m pip install -q -c "$root/constraints.txt" "$wheel"

mkdir -p "$work/run"
cd "$work/run"  # outside the checkout: nothing may be imported from the source tree
export PATH="$work/venv/bin:$PATH"
location=$(python -c "import rsseg, os; print(os.path.dirname(rsseg.__file__))")
case "$location" in
    "$work/venv/"*) ;;
    *) step "rsseg imported from $location, not from the installed wheel"; exit 1 ;;
esac

step "--help of every subcommand"
rsseg --version
for command in $(python -c "from rsseg.cli import COMMANDS; print(*COMMANDS)"); do
    run rsseg "$command" --help
done
run rsseg models

step "synth -> predict (bundled weights) -> vectorize -> score"
run rsseg synth -o scene.tif --size 384x320 --seed 3 --labels labels.tif
run rsseg predict scene.tif --model bafnet -o classes.tif --probs conf.tif --stac
run rsseg vectorize classes.tif -o classes.gpkg --stac
run rsseg score classes.tif labels.tif --json report.json
for f in classes.tif conf.tif classes.gpkg classes.stac.json report.json; do
    [ -s "$f" ] || { step "$f was not written"; exit 1; }
done

step "demo"
run rsseg demo --out demo_out --no-progress
step "the installed wheel works"
