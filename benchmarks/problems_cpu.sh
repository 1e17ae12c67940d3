#!/usr/bin/env bash
# Multi-label and regression on public data, on the CPU (issue 12): all-MiniLM-L6-v2 (the installed package)
# fine-tuned on GoEmotions (multi-label, 28 labels, the authors' TSV) and on STS-B (regression on sentence pairs,
# GLUE's TSV), each beside `textcls baseline` (TF-IDF + one logistic regression per label / ridge regression) on the
# same splits. Writes OUT/<name>/ (the run), OUT/<name>.json (its summary) and OUT/<name>-baseline.json.
# usage: benchmarks/problems_cpu.sh SHARED_DATA_DIR OUT_DIR [goemotions] [goemotions-cls] [stsb]
set -euo pipefail
DATA=$1; OUT=$2; shift 2
mkdir -p "$OUT"
GOEMOTIONS=(--data "$DATA/goemotions" --columns text,labels,id --label-separator ,
            --label-names $(cat "$DATA/goemotions/labels.txt"))
STSB=(--data "$DATA/stsb" --label-column score
      --columns index,genre,filename,year,old_index,source1,source2,sentence1,sentence2,score)
run() {  # run NAME DATA-FLAGS... -- TRAIN-FLAGS...
  local name=$1; shift
  local data=() train=()
  while [[ $1 != -- ]]; do data+=("$1"); shift; done; shift
  train=("$@")
  local start=$SECONDS
  python -m textcls -q baseline "${data[@]}" --json > "$OUT/$name-baseline.json"
  python -m textcls -q train "${data[@]}" "${train[@]}" --cache-dir "$OUT/cache" --output "$OUT/$name" --json \
    > "$OUT/$name.json"
  echo "$name: $((SECONDS - start)) s wall"
}
settings=("$@")
[[ ${#settings[@]} -gt 0 ]] || settings=(goemotions stsb)
for setting in "${settings[@]}"; do
  case $setting in
    # one epoch of the 43,410 comments (the dev file is validation: thresholds tuned there), 64 tokens, mean
    # pooling (MiniLM's own sentence pooling), learning rate 1e-4
    goemotions) run goemotions "${GOEMOTIONS[@]}" -- --model minilm-l6 --max-length 64 --epochs 1 \
                  --batch-size 32 --learning-rate 1e-4 --pooling mean ;;
    # the same with BERT's [CLS] pooler (fresh: MiniLM has none) and learning rate 5e-5
    goemotions-cls) run goemotions-cls "${GOEMOTIONS[@]}" -- --model minilm-l6 --max-length 64 --epochs 1 \
                      --batch-size 32 --learning-rate 5e-5 ;;
    # 3 epochs of the 4,249 training pairs less the carved test (dev.tsv is validation), 128 tokens
    stsb) run stsb "${STSB[@]}" -- --model minilm-l6 --max-length 128 --epochs 3 --batch-size 32 \
            --learning-rate 5e-5 ;;
    *) echo "unknown setting $setting" >&2; exit 2 ;;
  esac
done
