#!/usr/bin/env bash
# Long Range Arena, Text (byte-level IMDB), each attention mechanism: the recipes recipes/lra-text-<mechanism>.yaml
# need a GPU (20,000 steps of 32 x 4,096 bytes, bert-mini dims). On the CPU this runs them REDUCED, the same
# reduction for every mechanism: bert-tiny dims (2 layers, 128 wide), 1,024 bytes, one epoch over 6,000 training
# reviews (187 steps of 32), learning rate 1e-3 with 19 warmup steps, weight decay 0.1, bf16 where the CPU has it, no
# validation during training, and a stratified 5,000 of the 25,000 test reviews. It prints the wall time of each and
# writes OUT/<mechanism>/ (the run) and OUT/<mechanism>.json (the summary).
# usage: benchmarks/lra_cpu.sh DATA_DIR OUT_DIR MECHANISM...     (full sliding linformer lsh bigbird)
#        benchmarks/lra_cpu.sh --gpu DATA_DIR OUT_DIR MECHANISM...   the recipes as they are (the LRA setting)
set -euo pipefail
REDUCE=(--model bert-tiny --max-length 1024 --max-train-samples 6000 --max-steps 187 --warmup-steps 19
        --learning-rate 0.001 --weight-decay 0.1 --mixed-precision auto --eval-strategy no --max-eval-samples 5000)
if [[ ${1:-} == --gpu ]]; then REDUCE=(); shift; fi
DATA=$1; OUT=$2; shift 2
RECIPES=$(cd "$(dirname "$0")/../recipes" && pwd)
mkdir -p "$OUT"
for mechanism in "$@"; do
  start=$SECONDS
  python -m textcls -q train --config "$RECIPES/lra-text-$mechanism.yaml" --data "$DATA" --cache-dir "$OUT/cache" \
    --output "$OUT/$mechanism" --json "${REDUCE[@]}" > "$OUT/$mechanism.json"
  echo "$mechanism: $((SECONDS - start)) s wall, test accuracy $(python -c "import json,sys; print(json.load(open(sys.argv[1]))['final']['test']['accuracy'])" "$OUT/$mechanism.json")"
done
