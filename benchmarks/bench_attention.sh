#!/usr/bin/env bash
# The attention benchmark of BENCHMARKS.md: one training step (forward, backward, AdamW) of bert-tiny's dimensions,
# batch 2, full and sliding attention (window 256, [CLS] global) beside transformers' Longformer (the same window)
# and BERT, from 512 to 16,384 tokens. Two rounds, round-robin, each case keeps its fastest (a shared machine's
# slow moments then hit one round, not one column). Writes OUT/bench.json, OUT/bench.md, OUT/attention.png.
# usage: benchmarks/bench_attention.sh OUT_DIR [extra flags for textcls bench attention]
set -euo pipefail
OUT=$1; shift
python -m textcls bench attention --lengths 512 1024 2048 4096 8192 16384 --attention full sliding \
  --batch-size 2 --sliding-window 256 --reference --repeats 5 --warmup 2 --rounds 2 --timeout 900 \
  --output "$OUT" "$@"
