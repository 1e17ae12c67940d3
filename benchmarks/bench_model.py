"""Training-step throughput of the textcls encoder against transformers' BertForSequenceClassification, on CPU.

    python benchmarks/bench_model.py                  # bert-tiny dims at 128, 512, 2048 tokens
    python benchmarks/bench_model.py --sdpa           # which SDPA kernel runs with dropout / masks, and its time
    python benchmarks/bench_model.py --device cuda    # the same on a GPU

Both models have bert-tiny's dimensions and the same random weights (copied from the transformers model into textcls
through textcls's checkpoint mapping); both get the same batches, in training mode (dropout on), forward + backward,
timed alternately in the same process so that a busy machine slows both alike. transformers runs with its default
attention implementation (printed) and its config's attention dropout (0.1, as the bert-tiny checkpoint has it);
textcls with its default attention dropout, 0.0. A third column, transformers with attention dropout 0.0, shows how
much of the difference that one setting makes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from textcls.model.presets import PRESETS
from textcls.model import BertClassifier, EncoderConfig, load_hf_state

TOKENS_PER_BATCH = 4096


def hf_model(attention_dropout: float, positions: int, seed: int):
    from transformers import BertConfig, BertForSequenceClassification

    p = PRESETS["bert-tiny"]
    cfg = BertConfig(num_hidden_layers=p.num_layers, hidden_size=p.hidden_size, num_attention_heads=p.num_heads,
                     intermediate_size=p.intermediate_size, attention_probs_dropout_prob=attention_dropout,
                     max_position_embeddings=positions, num_labels=2)
    torch.manual_seed(seed)
    return BertForSequenceClassification(cfg)


def textcls_model(reference, positions: int) -> BertClassifier:
    p = PRESETS["bert-tiny"]
    model = BertClassifier(EncoderConfig(num_layers=p.num_layers, hidden_size=p.hidden_size, num_heads=p.num_heads,
                                         intermediate_size=p.intermediate_size, max_positions=positions), num_labels=2)
    load_hf_state(model, reference.state_dict(), "transformers model")
    return model


def batch(T: int, padded: bool, gen: torch.Generator) -> dict:
    B = max(1, TOKENS_PER_BATCH // T)
    ids = torch.randint(1000, 30000, (B, T), generator=gen)
    mask = torch.ones(B, T, dtype=torch.long)
    if padded:  # lengths spread over [T/4, T], the longest filling the batch as dynamic padding does
        lengths = torch.randint(T // 4, T + 1, (B,), generator=gen)
        lengths[0] = T
        mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
        ids = ids * mask  # [PAD] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.randint(0, 2, (B,), generator=gen)}


def timed(fn) -> float:
    """Seconds `fn()` takes, waiting for the GPU (if any) to finish its queued work."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def step(model, inputs: dict) -> float:
    def run():
        model(**inputs).loss.backward()
        model.zero_grad(set_to_none=True)
    return timed(run)


def bench_models(lengths: list[int], repeats: int, seed: int, device: str) -> None:
    positions = max(512, *lengths)
    reference = hf_model(0.1, positions, seed)
    no_dropout = hf_model(0.0, positions, seed)
    models = {"textcls": textcls_model(reference, positions), "transformers": reference,
              "transformers, attn dropout 0": no_dropout}
    for m in models.values():
        m.train().to(device)
    impl = reference.config._attn_implementation
    where = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; transformers attention implementation: "
          f"{impl!r}; bert-tiny dims; {TOKENS_PER_BATCH} tokens per batch; median of {repeats} steps\n")
    header = ["tokens", "batch", "padding"] + [f"{name} ex/s" for name in models] + \
             ["textcls / transformers", "textcls / transformers attn dropout 0"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    gen = torch.Generator().manual_seed(seed)
    for T in lengths:
        for padded in (False, True):
            inputs = {k: v.to(device) for k, v in batch(T, padded, gen).items()}
            times: dict[str, list[float]] = {name: [] for name in models}
            for name, m in models.items():  # warm-up
                step(m, inputs)
            for _ in range(repeats):  # alternate, so that load from other processes hits all models alike
                for name, m in models.items():
                    times[name].append(step(m, inputs))
            B = inputs["input_ids"].shape[0]
            rate = {name: B / statistics.median(ts) for name, ts in times.items()}
            names = list(models)
            cells = [T, B, "yes" if padded else "no"] + [f"{rate[n]:.1f}" for n in names] + \
                    [f"{rate[names[0]] / rate[names[1]]:.2f}x", f"{rate[names[0]] / rate[names[2]]:.2f}x"]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)


def sdpa_kernel_name(fn) -> str:
    """The SDPA kernel that `fn` runs, read from the profiler's op names."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:  # the dispatched aten op is on the CPU side
        fn()
    ops = {e.key for e in prof.key_averages()}
    kernels = ("flash_attention_for_cpu", "flash_attention", "cudnn_attention", "efficient_attention", "attention_math")
    for kernel in kernels:
        if any(kernel in op for op in ops):
            return kernel
    return "unknown"


def bench_sdpa(lengths: list[int], repeats: int, seed: int, device: str) -> None:
    B, nh, hs = 2, 2, 64  # bert-tiny's heads at batch 2
    torch.manual_seed(seed)
    print(f"F.scaled_dot_product_attention, forward + backward, B={B} nh={nh} hs={hs}, one row half padding\n")
    print("| tokens | variant | kernel | ms |")
    print("|---|---|---|---|")
    for T in lengths:
        q, k, v = (torch.randn(B, nh, T, hs, device=device, requires_grad=True) for _ in range(3))
        real = torch.ones(B, T, dtype=torch.bool, device=device)
        real[1, T // 2:] = False
        bool_b11t = real[:, None, None, :]
        float_b11t = torch.zeros(B, 1, 1, T, device=device).masked_fill(~bool_b11t, float("-inf"))
        variants = {
            "no mask": {},
            "no mask, dropout_p=0.1": {"dropout_p": 0.1},
            "bool mask (B,1,1,T)": {"attn_mask": bool_b11t},
            "bool mask (B,1,T,T)": {"attn_mask": bool_b11t.expand(B, 1, T, T).contiguous()},
            "float mask (B,1,1,T)": {"attn_mask": float_b11t},
            "float mask (B,1,T,T)": {"attn_mask": float_b11t.expand(B, 1, T, T).contiguous()},
        }
        for name, kwargs in variants.items():
            def run():
                F.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()
            kernel = sdpa_kernel_name(run)
            ms = statistics.median(timed(run) for _ in range(repeats)) * 1000
            print(f"| {T} | {name} | {kernel} | {ms:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (default: 128 512 2048; "
                                                               "with --sdpa 2048 4096)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per model and setting")
    parser.add_argument("--sdpa", action="store_true", help="time SDPA kernel variants instead of the models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    if args.sdpa:
        bench_sdpa(args.lengths or [2048, 4096], args.repeats, args.seed, args.device)
    else:
        bench_models(args.lengths or [128, 512, 2048], args.repeats, args.seed, args.device)


if __name__ == "__main__":
    main()
