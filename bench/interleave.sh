#!/bin/bash
# Three interleaved `python -m bench.run` runs of several commits, each in its own git worktree:
#   bash bench/interleave.sh 728a95b 4f8970b HEAD   (results in each worktree's bench/results/)
# SAME_BENCH=1 measures every commit with this checkout's bench/ (copied into each worktree): the same load
# and the same lines for service code of several commits, when the bench itself changed between them.
set -u
PY=${PY:-$(pwd)/.venv/bin/python}
trees=()
for rev in "$@"; do
  dir=/tmp/aifx-bench-$(git rev-parse --short "$rev")
  [ -d "$dir" ] || git worktree add -f "$dir" "$rev" -q
  if [ "${SAME_BENCH:-0}" = 1 ]; then
    tar -C bench --exclude=results --exclude=__pycache__ -cf - . | tar -C "$dir/bench" -xf -
  fi
  trees+=("$dir")
done
for run in 1 2 3; do
  for t in "${trees[@]}"; do
    pkill -f _bentoml_impl; sleep 2  # no server of an earlier run may share the cores
    echo "=== run $run $t $(date -u +%H:%M:%S)"
    (cd "$t" && PYTHONPATH="$t" "$PY" -m bench.run | grep -E '^\|.*\| [0-9]|batch route|native API|cold start|wrote')
  done
done
