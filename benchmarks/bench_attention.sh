#!/usr/bin/env bash
# The attention benchmark of BENCHMARKS.md: one training step (forward, backward, AdamW) of bert-tiny's dimensions,
# batch 2, every textcls mechanism — full, sliding (window 256, [CLS] global), linformer (k 256), lsh (64 buckets,
# 1 round, chunks of 64), bigbird (blocks of 64, 3 random) — beside transformers' Longformer, BERT, BigBird and
# Reformer with the same settings, from 512 to 16,384 tokens. Two rounds, round-robin, each case keeps its fastest
# (a shared machine's slow moments then hit one round, not one column). Writes OUT/bench.json, OUT/bench.md,
# OUT/attention.png.
# usage: benchmarks/bench_attention.sh OUT_DIR [extra flags for textcls bench attention, e.g. --lengths 512 4096]
set -euo pipefail
OUT=$1; shift
python -m textcls bench attention --lengths 512 1024 2048 4096 8192 16384 \
  --attention full sliding linformer lsh bigbird --batch-size 2 --sliding-window 256 --linformer-k 256 \
  --lsh-buckets 64 --lsh-rounds 1 --lsh-chunk 64 --bigbird-block 64 --bigbird-random 3 \
  --reference --repeats 5 --warmup 2 --rounds 2 --timeout 900 --output "$OUT" "$@"
