#!/usr/bin/env bash
# The README's main job (recipes/imdb-bert-tiny.yaml) as an earlier commit ran it, against the working tree, one after
# the other on the same machine: the whole command's wall time (tokenizing from an empty cache, training, the
# validation and 25,000 test reviews, writing the run) and the test accuracy of each. The earlier commit runs from a
# git worktree with its own source and recipe, in this environment (the same torch and transformers), and with its own
# default --mixed-precision; the working tree runs with its default (auto: bf16 on a CPU that computes it natively).
# usage: benchmarks/bench_main_job.sh DATA_DIR OUT_DIR REF [FLAGS...]   (FLAGS: given to both, e.g. --mixed-precision no)
set -euo pipefail
DATA=$(cd "$1" && pwd); OUT=$2; REF=$3; shift 3
FLAGS=("$@")
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
OLD="$OUT/worktree-$REF"
if [ ! -d "$OLD" ]; then git -C "$REPO" worktree add --detach -q "$OLD" "$REF"; fi

run() {  # run NAME SOURCE_TREE: the main job with that tree's code and recipe
  local name=$1 tree=$2 start=$SECONDS
  rm -rf "$OUT/$name" "$OUT/cache-$name"
  (cd "$tree" && PYTHONPATH="$tree/src" python -m textcls -q train --config recipes/imdb-bert-tiny.yaml \
     --data "$DATA" --cache-dir "$OUT/cache-$name" --output "$OUT/$name" --json ${FLAGS[@]+"${FLAGS[@]}"} > "$OUT/$name.json")
  local seconds=$((SECONDS - start))
  python - "$name" "$seconds" "$OUT/$name.json" <<'EOF'
import json, sys
name, seconds, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(path))
acc = s["final"]["test"]["accuracy"]
print(f"| {name} | {seconds} s | {s['train_seconds']:.0f} s | {acc:.2%} |")
EOF
}

echo "main job: $REF (git $(git -C "$REPO" rev-parse --short "$REF")) against the working tree ($(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet || echo ', with changes'))"
echo
echo "| code | wall time (whole command) | training time | test accuracy |"
echo "|---|---|---|---|"
run "ref-$REF" "$OLD"
run "head" "$REPO"
