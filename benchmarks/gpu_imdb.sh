#!/usr/bin/env bash
# IMDB on one GPU, in one prepared session (the project's GPU time is lent in 15-minute slices):
#   1. all-MiniLM-L6-v2 fine-tuned on the full train split, evaluated on the 25k test reviews;
#   2. bert-tiny from random weights under a few settings, to choose the CPU accuracy run's settings
#      (the same model, data and steps run on the CPU; only the clock differs).
# usage: benchmarks/gpu_imdb.sh DATA_DIR MINILM_DIR OUT_DIR [SECONDS_PER_TINY_RUN]
# Each run's summary.json, metrics.jsonl and log land in OUT_DIR/<run>/; checkpoints stay in /tmp.
set -uo pipefail
DATA=$1; MINILM=$2; OUT=$3; LIMIT=${4:-100}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)" | tee -a "$OUT/gpu.txt"

run() {  # run NAME SECONDS TRAIN-FLAGS...
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" python3 -m textcls train --data "$DATA" --label-names neg pos --cache-dir /tmp/textcls-cache \
    --num-proc 8 --output "/tmp/runs/$name" --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  local rc=$?
  mkdir -p "$OUT/$name"
  cp /tmp/runs/$name/{summary.json,metrics.jsonl,config.json} "$OUT/$name/" 2>/dev/null
  cp -r /tmp/runs/$name/plots "$OUT/$name/" 2>/dev/null
  echo "$name rc=$rc wall=$((SECONDS - start)) s" | tee -a "$OUT/runs.txt"
}

run minilm-l6 170 --config "$(dirname "$0")/../recipes/imdb-minilm-gpu.yaml" --model "$MINILM"
TINY="--model bert-tiny --init random --tokenizer $MINILM --max-length 512 --batch-size 32 --logging-steps 50 --epochs 3"
run tiny-mean-lr1e-3 "$LIMIT" $TINY --pooling mean --learning-rate 1e-3
run tiny-cls-lr1e-3 "$LIMIT" $TINY --pooling cls --learning-rate 1e-3
