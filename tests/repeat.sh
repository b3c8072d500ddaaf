#!/usr/bin/env bash
# Run the whole suite N times in a row under -n 2 (not in CI: about an hour for 50 here),
# at HEAD, in a worktree of its own so that editing the checkout meanwhile changes nothing.
# A line per run goes to the log; a failing run's output is kept beside it.
#
#   PYTHON=.venv/bin/python bash tests/repeat.sh [N] [LOG]
set -u
runs=${1:-50}
log=${2:-/tmp/mountns-repeat.log}
python=$(realpath -s "$(command -v "${PYTHON:-python3}")")  # -s: a venv's python is a symlink
tree=$(mktemp -d /tmp/mountns-repeat-XXXXXX)
git worktree add --quiet --detach "$tree" HEAD || exit 1
trap 'git worktree remove --force "$tree"' EXIT
echo "at $(git -C "$tree" rev-parse --short HEAD), $runs runs, $(date -u +%FT%TZ)" >> "$log"
passed=0
for run in $(seq 1 "$runs"); do
    start=$(date +%s)
    (cd "$tree" && PYTHONPATH="$tree" "$python" -m pytest -n 2 -p no:cacheprovider -q) \
        > "$log.run" 2>&1
    status=$?
    echo "run $run rc=$status $(($(date +%s) - start))s $(tail -1 "$log.run")" >> "$log"
    if [ "$status" -eq 0 ]; then passed=$((passed + 1)); else cp "$log.run" "$log.failed-$run"; fi
done
echo "passed $passed of $runs" >> "$log"
[ "$passed" -eq "$runs" ]
