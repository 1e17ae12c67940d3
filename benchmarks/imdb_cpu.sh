#!/usr/bin/env bash
# IMDB accuracy on the CPU within 30 minutes of wall time: train on the 25k train reviews (2.5k carved as
# validation), evaluate on the 25k test reviews. Each setting prints its wall time and writes OUT/<name>/ (the run
# directory) and OUT/<name>.json (the summary).
# usage: benchmarks/imdb_cpu.sh DATA_DIR OUT_DIR SETTING...
#   tiny-mean     bert-tiny dims, random init, mean pooling, dropout 0.2, weight decay 0.1, 2 epochs
#   tiny-mean-3   the same, 3 epochs
#   tiny-mean-head  tiny-mean with head truncation (the first 510 wordpieces) instead of head+tail
#   tiny-cls-3    bert-tiny dims, random init, BERT's [CLS] pooler, BERT's dropout 0.1, 3 epochs
#   tiny-mlm      23 min of masked-LM pretraining on train + unsupervised texts, then tiny-mean-like fine-tuning
#   minilm        all-MiniLM-L6-v2 (the offline pretrained weights), max length 256, the steps that fit 30 min
set -euo pipefail
DATA=$1; OUT=$2; shift 2
mkdir -p "$OUT"
COMMON=(--data "$DATA" --label-names neg pos --cache-dir "$OUT/cache" --batch-size 32 --json)
TINY=(--model bert-tiny --init random --tokenizer minilm-l6 --max-length 512 --truncation head+tail)

# A flag given twice takes its last value, so a setting can override one of TINY's.
run() {  # run NAME COMMAND FLAGS...
  local name=$1 cmd=$2; shift 2
  local start=$SECONDS
  python -m textcls -q "$cmd" "${COMMON[@]}" --output "$OUT/$name" "$@" > "$OUT/$name.json"
  echo "$name: $((SECONDS - start)) s wall"
}

for setting in "$@"; do
  case $setting in
    tiny-mean) run tiny-mean train "${TINY[@]}" --pooling mean --hidden-dropout 0.2 --weight-decay 0.1 \
                 --learning-rate 1e-3 --epochs 2 ;;
    tiny-mean-head) run tiny-mean-head train "${TINY[@]}" --truncation head --pooling mean --hidden-dropout 0.2 \
                      --weight-decay 0.1 --learning-rate 1e-3 --epochs 2 ;;
    tiny-mean-3) run tiny-mean-3 train "${TINY[@]}" --pooling mean --hidden-dropout 0.2 --weight-decay 0.1 \
                   --learning-rate 1e-3 --epochs 3 ;;
    tiny-cls-3) run tiny-cls-3 train "${TINY[@]}" --pooling cls --learning-rate 1e-3 --epochs 3 ;;
    tiny-mlm) start=$SECONDS
              run tiny-mlm-pretrain pretrain --model bert-tiny --init random --tokenizer minilm-l6 --max-length 256 \
                --learning-rate 1e-3 --max-steps 2500
              run tiny-mlm train --model "$OUT/tiny-mlm-pretrain/model" --max-length 512 --truncation head+tail \
                --pooling mean --learning-rate 5e-4 --epochs 2
              echo "tiny-mlm, pretraining and fine-tuning: $((SECONDS - start)) s wall" ;;
    # 520 steps of 32 reviews take the 30 minutes here (9.5 reviews/s at 256 tokens); the 25k test reviews then take
    # about 15 more minutes to evaluate.
    minilm) run minilm train --model minilm-l6 --max-length 256 --truncation head+tail --learning-rate 1e-4 \
              --max-steps 520 --eval-strategy no ;;
    *) echo "unknown setting $setting" >&2; exit 2 ;;
  esac
done
