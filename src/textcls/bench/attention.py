"""`textcls bench attention`: what each attention mechanism costs in one training step as the input grows.

A step is forward + backward + AdamW step of a sequence classifier (bert-tiny's dimensions by default) on a batch of
`batch_size` random token sequences of `length` tokens, [CLS] global where a mechanism has global tokens. Each
(mechanism, length) runs in a child process of its own: its peak memory is its own, and a length that runs out of
memory or time kills only that child and becomes a row that says so. The time is the best of `repeats` steps after
`warmup` steps; the peak memory is what the steps added to the process at their peak over the model and batch
(gradients, optimizer state, activations; CUDA: the allocator's peak; CPU: the peak resident set size, VmHWM, reset
before the first step).

References, in the same run and on the same batches, each with the same dimensions and the options of the textcls
mechanism it stands beside: transformers' LongformerForSequenceClassification (`--sliding-window`;
`transformers-longformer`), BertForSequenceClassification (`transformers-bert`), BigBirdForSequenceClassification
(block_sparse, `--bigbird-block`, `--bigbird-random`; `transformers-bigbird`) and ReformerForSequenceClassification
(every layer LSH, `--lsh-buckets`, `--lsh-rounds`, `--lsh-chunk`, learned positions instead of axial ones;
`transformers-reformer`).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REFERENCES = ("transformers-longformer", "transformers-bert",
              "transformers-bigbird", "transformers-reformer")
# The textcls options each reference takes (a reference gets the value given for its textcls twin, else this
# default, which matches the reference settings).
REFERENCE_OPTIONS = {"transformers-longformer": {"sliding_window": 256}, "transformers-bert": {},
                     "transformers-bigbird": {"bigbird_block": 64, "bigbird_random": 3},
                     "transformers-reformer": {"lsh_buckets": 64, "lsh_rounds": 1, "lsh_chunk": 64}}
ROW_KEYS = ("attention", "length", "batch_size", "step_seconds", "peak_memory_mb")


@dataclass
class Case:
    """One measurement: a mechanism (or a reference) at one length."""
    attention: str
    length: int
    batch_size: int
    model: str = "bert-tiny"
    options: dict = field(default_factory=dict)  # the mechanism's options (sliding_window, ...); the window for
    repeats: int = 5                             # transformers-longformer is sliding_window
    warmup: int = 2
    device: str = "cpu"
    seed: int = 0


# ------------------------------------------------------------------------------------------- one case, in-process

def _batch(case: Case, vocab_size: int):
    import torch

    g = torch.Generator().manual_seed(case.seed + case.length)  # the same batch for every mechanism at a length
    input_ids = torch.randint(1000, vocab_size, (case.batch_size, case.length), generator=g)
    input_ids[:, 0] = 101  # [CLS]
    labels = torch.randint(0, 2, (case.batch_size,), generator=g)
    return input_ids, labels


def _textcls_model(case: Case):
    from textcls.config import ModelConfig
    from textcls.model import attention_options, build_classifier

    cfg = ModelConfig(model=case.model, init="random", attention=case.attention, extend_positions=True)
    model, _ = build_classifier(cfg, ["neg", "pos"], max_length=case.length,
                                attention=attention_options(case.attention, case.options))
    return model, model.encoder.config.vocab_size, {}


def _reference_model(case: Case):
    """transformers' own model with the preset's dimensions (dropout as textcls's defaults: hidden 0.1, attention
    0.0), and the inputs it takes beyond ids and labels."""
    import torch
    import transformers as tf

    from textcls.model.presets import PRESETS

    dims = PRESETS[case.model].config
    o = REFERENCE_OPTIONS[case.attention] | case.options
    common = dict(vocab_size=dims.vocab_size, hidden_size=dims.hidden_size, num_hidden_layers=dims.num_layers,
                  num_attention_heads=dims.num_heads, hidden_dropout_prob=dims.hidden_dropout, num_labels=2)
    bert_like = dict(common, intermediate_size=dims.intermediate_size, attention_probs_dropout_prob=0.0)
    if case.attention == "transformers-bert":
        cfg = tf.BertConfig(max_position_embeddings=max(512, case.length), **bert_like)
        return tf.BertForSequenceClassification(cfg), dims.vocab_size, {}
    if case.attention == "transformers-bigbird":
        # Below (5 + 2r) blocks transformers' BigBird switches itself to full attention (with a warning).
        cfg = tf.BigBirdConfig(attention_type="block_sparse", block_size=o["bigbird_block"],
                               num_random_blocks=o["bigbird_random"], max_position_embeddings=max(512, case.length),
                               **bert_like)
        return tf.BigBirdForSequenceClassification(cfg), dims.vocab_size, {}
    if case.attention == "transformers-reformer":
        # Every layer LSH (Reformer alternates local and LSH layers by default); learned positions, since axial
        # ones fix the length; Reformer's reversible layers are part of what it is, so they stay.
        cfg = tf.ReformerConfig(attn_layers=["lsh"] * dims.num_layers, attention_head_size=dims.hidden_size //
                                dims.num_heads, feed_forward_size=dims.intermediate_size, hidden_act="gelu",
                                num_buckets=o["lsh_buckets"], num_hashes=o["lsh_rounds"],
                                lsh_attn_chunk_length=o["lsh_chunk"], lsh_attention_probs_dropout_prob=0.0,
                                axial_pos_embds=False, max_position_embeddings=max(512, case.length), is_decoder=False,
                                **common)
        return tf.ReformerForSequenceClassification(cfg), dims.vocab_size, {}
    window = o["sliding_window"]
    cfg = tf.LongformerConfig(attention_window=[window] * dims.num_layers, max_position_embeddings=case.length + 2,
                              pad_token_id=1, **bert_like)  # RoBERTa positions start after the padding id
    global_mask = torch.zeros(case.batch_size, case.length, dtype=torch.long)
    global_mask[:, 0] = 1  # [CLS], as textcls's sliding attention
    return tf.LongformerForSequenceClassification(cfg), dims.vocab_size, {"global_attention_mask": global_mask}


def _memory_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc/self/status."""
    status = open("/proc/self/status").read()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM"))


def run_case(case: Case) -> dict:
    """Build, warm up and time one case in this process; the row (ROW_KEYS, and how it was measured)."""
    import torch

    torch.manual_seed(case.seed)
    build = _reference_model if case.attention in REFERENCES else _textcls_model
    model, vocab_size, extra = build(case)
    device = torch.device(case.device)
    model.to(device).train()
    input_ids, labels = (t.to(device) for t in _batch(case, vocab_size))
    extra = {k: v.to(device) for k, v in extra.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, labels=labels, **extra).loss
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # The peak is counted from before the first step: the memory freed after a step stays in the process (the
    # allocators keep it), so a baseline taken after warm-up would already hold the step's activations.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current size (Linux)
            f.write("5")
        base = _memory_mb()[0]
    for _ in range(case.warmup):
        step()
    seconds = min(step() for _ in range(case.repeats))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else _memory_mb()[1] - base
    return {"attention": case.attention, "length": case.length, "batch_size": case.batch_size,
            "step_seconds": seconds, "peak_memory_mb": round(peak, 1), "status": "ok",
            "per_example_seconds": seconds / case.batch_size, "options": case.options, "model": case.model,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "repeats": case.repeats}


# ------------------------------------------------------------------------------------------- one case, in a child

def measure(case: Case, timeout: float) -> dict:
    """`run_case` in a child process; running out of memory or time is a row that says so."""
    row = {"attention": case.attention, "length": case.length, "batch_size": case.batch_size,
           "step_seconds": None, "peak_memory_mb": None, "options": case.options, "model": case.model}
    try:
        out = subprocess.run([sys.executable, "-m", "textcls.bench.attention", json.dumps(dataclasses.asdict(case))],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return row | {"status": f"timeout (over {timeout:.0f} s)"}
    if out.returncode == 0:
        return json.loads(out.stdout.strip().splitlines()[-1])
    oom = out.returncode in (-9, 137) or "out of memory" in out.stderr.lower() or "MemoryError" in out.stderr
    detail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"
    return row | {"status": "out of memory" if oom else f"failed: {detail}"}


def bench_attention(lengths: list[int], attentions: list[str], batch_size: int, model: str = "bert-tiny",
                    options: Optional[dict] = None, reference: bool = False, repeats: int = 5, warmup: int = 2,
                    device: str = "cpu", timeout: float = 900, rounds: int = 1, progress=None) -> list[dict]:
    """One row per (mechanism, length), references after textcls's own mechanisms when asked. `options` are the
    mechanisms' options by name (sliding_window, ...): each mechanism, and each reference, takes its own
    (REFERENCE_OPTIONS). With `rounds` > 1 every case is measured that many times, round-robin, and keeps its fastest
    row: on a shared machine, a slow moment then hits one round of one case, not one mechanism's whole column."""
    from textcls.config import attention_option_classes

    options = options or {}
    owned = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in attention_option_classes().items()}
    names = list(attentions) + (list(REFERENCES) if reference else [])
    cases = [Case(name, length, batch_size, model,
                  {k: v for k, v in options.items() if k in owned.get(name, REFERENCE_OPTIONS.get(name, {}))},
                  repeats, warmup, device)
             for length in lengths for name in names]
    best: dict[int, dict] = {}
    for _ in range(rounds):
        for i, case in enumerate(cases):
            if i in best and best[i]["step_seconds"] is None:  # out of memory or time once: not again
                continue
            row = measure(case, timeout)
            if progress:
                progress(row)
            if i not in best or _faster(row, best[i]):
                best[i] = row
    return [best[i] for i in range(len(cases))]


def _faster(row: dict, than: dict) -> bool:
    if row["step_seconds"] is None:
        return False
    return than["step_seconds"] is None or row["step_seconds"] < than["step_seconds"]


# ------------------------------------------------------------------------------------------- reporting

def table(rows: list[dict]) -> str:
    """A markdown table: step time, time per example and peak memory per mechanism and length, and the ratio of
    each row's step time to full attention's at the same length."""
    full = {r["length"]: r["step_seconds"] for r in rows if r["attention"] == "full" and r["step_seconds"]}
    lines = ["| attention | length | batch | step (s) | per example (s) | peak memory (MB) | vs full |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["step_seconds"] is None:
            lines.append(f"| {r['attention']} | {r['length']:,} | {r['batch_size']} | {r['status']} | | | |")
            continue
        ratio = f"{r['step_seconds'] / full[r['length']]:.2f}x" if r["length"] in full else ""
        lines.append(f"| {r['attention']} | {r['length']:,} | {r['batch_size']} | {r['step_seconds']:.3f} | "
                     f"{r['step_seconds'] / r['batch_size']:.4f} | {r['peak_memory_mb']:,.0f} | {ratio} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> Path:
    """Step time and peak memory against length, log-log, one line per mechanism."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textcls.io import atomic_path

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in dict.fromkeys(r["attention"] for r in rows):
        done = [r for r in rows if r["attention"] == name and r["step_seconds"] is not None]
        lengths = [r["length"] for r in done]
        left.plot(lengths, [r["step_seconds"] for r in done], "o-", label=name)
        right.plot(lengths, [max(r["peak_memory_mb"], 1) for r in done], "o-", label=name)
    for ax, what in ((left, "training step (s)"), (right, "peak memory of the step (MB)")):
        ax.set(xscale="log", yscale="log", xlabel="tokens per sequence", ylabel=what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    batch = rows[0]["batch_size"] if rows else 0
    fig.suptitle(f"One training step, batch {batch}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":  # the child of `measure`: one case, its row as the last line of stdout
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from textcls.allocator import keep_freed_memory
    keep_freed_memory()  # as the textcls command does, for every model alike
    print(json.dumps(run_case(Case(**json.loads(sys.argv[1])))))
