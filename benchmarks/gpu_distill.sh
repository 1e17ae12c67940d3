#!/usr/bin/env bash
# Distillation on one GPU (issue 11), in one prepared session (GPU time is lent in 15-minute slices):
#   1. the teacher: all-MiniLM-L6-v2 fine-tuned on IMDB's train split (recipes/imdb-minilm-gpu.yaml), evaluated on
#      the 25,000 test reviews;
#   2. the students, from random weights, distilled from it on train + unsupervised (72,500 reviews):
#      recipes/imdb-distill-bert-mini.yaml and imdb-distill-bert-tiny.yaml; the teacher labels the reviews once
#      (the cache is shared: the second student starts at once); each student is evaluated on the test reviews.
# usage: benchmarks/gpu_distill.sh DATA_DIR MINILM_DIR OUT_DIR
# OUT_DIR gets each run's summary.json, metrics.jsonl, config.json, log and model/ (the models come back for the
# CPU predict throughput of teacher and student: benchmarks/bench_predict.py --model OUT_DIR/<run>/model).
set -uo pipefail
DATA=$1; MINILM=$2; OUT=$3
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"

run() {  # run NAME SECONDS COMMAND FLAGS...
  local name=$1 limit=$2 cmd=$3; shift 3
  local start=$SECONDS
  timeout "$limit" python3 -m textcls "$cmd" --data "$DATA" --cache-dir /tmp/textcls-cache --num-proc 8 \
    --output "/tmp/runs/$name" --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  local rc=$?
  mkdir -p "$OUT/$name"
  cp /tmp/runs/$name/{summary.json,metrics.jsonl,config.json} "$OUT/$name/" 2>/dev/null
  cp -r /tmp/runs/$name/model "$OUT/$name/" 2>/dev/null
  echo "$name rc=$rc wall=$((SECONDS - start)) s" | tee -a "$OUT/runs.txt"
}

run teacher-minilm 200 train --config "$REPO/recipes/imdb-minilm-gpu.yaml" --model "$MINILM"
STUDENT="--teacher /tmp/runs/teacher-minilm --tokenizer $MINILM --mixed-precision bf16"
run student-mini 300 distill --config "$REPO/recipes/imdb-distill-bert-mini.yaml" $STUDENT
run student-tiny 200 distill --config "$REPO/recipes/imdb-distill-bert-tiny.yaml" $STUDENT
