"""Which words pushed the prediction: gradient x input on the word embeddings (Shrikumar et al. 2016; Denil et al.
2014), per word.

For one text: e = the word embeddings of its tokens (B windows, T tokens, C hidden), y = the log-probability of the
predicted label. A token's score is sum over C of dy/de * e: the first-order share of y that its word vector
carries (positive: towards the predicted label, negative: against it). Wordpieces are then merged into the words
of the tokenizer's pre-tokenizer, with their character offsets in the text.

The text is tokenized exactly as the model sees it in predict (the same encoder, truncation and special tokens);
words that truncation cut off get score 0 and `seen: false`. With --truncation chunks the prediction is the mean
of the windows' logits, as in predict, and a wordpiece that two windows share gets both of its gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from textcls.infer.model import TrainedModel

METHOD = "gradient x input"
TARGET = "log-probability of the predicted label"


def _origins(template: tuple, kept: tuple[list[int], ...]) -> list[Optional[tuple[int, int]]]:
    """Where each token of a model row comes from: (segment, wordpiece position), or None for a special token;
    laid out by the encoder's special-tokens template, as ExampleEncoder.assemble lays out the ids."""
    out: list[Optional[tuple[int, int]]] = []
    for segment, _, _ in template:
        out += [None] if segment is None else [(segment, p) for p in kept[segment]]
    return out


def explain(trained: "TrainedModel", text: str, pair: Optional[str] = None) -> dict:
    """Prediction (label, probabilities) and per-word scores for `text` (and its `pair`): one forward and one
    backward pass, the model's weights untouched (no .grad is left on them)."""
    import torch

    pairs = pair is not None
    trained.check_data(pairs)
    encoder = trained.encoder(pair=pairs)
    segments = [text, pair] if pairs else [text]
    # The encoder's own tokenizer (truncation and padding off): the same wordpieces, plus offsets and word ids.
    encodings = [encoder.backend.encode(s, add_special_tokens=False) for s in segments]
    # Which wordpieces each model row keeps: the encoder's truncation, run on positions instead of token ids.
    positions = [list(range(len(e.ids))) for e in encodings]
    windows = encoder.row_segments(positions[0], positions[1] if pairs else None)
    origins = [_origins(encoder.template, kept) for kept in windows]
    rows = []
    for kept in windows:
        ids, types = encoder.assemble(tuple([encodings[s].ids[p] for p in kept[s]] for s in range(len(kept))))
        rows.append({"input_ids": ids, "token_type_ids": types})
    expected = encoder([text], [pair] if pairs else None)["input_ids"]
    if [r["input_ids"] for r in rows] != expected:  # a guard against this copy of the layout drifting from it
        raise RuntimeError("explain laid out the tokens differently from the model's encoder")

    batch = trained.collator()(rows)
    batch.pop("doc_ids", None)
    inputs = {k: v.to(trained.device) for k, v in batch.items()}  # (W, T) each: W windows (1 unless chunks)
    captured = []

    def hook(module, args, output):
        # A leaf of its own: the gradient stops at the word vectors and never reaches the embedding weights.
        output = output.detach().requires_grad_()  # (W, T, C)
        captured.append(output)
        return output

    model = trained.model.eval()
    handle = model.encoder.embeddings.word.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(**inputs).logits.float().mean(0)  # (num_labels,): windows averaged, as in predict
            log_probs = logits.log_softmax(-1)
            best = int(log_probs.argmax())
            (grad,) = torch.autograd.grad(log_probs[best], captured[0])  # (W, T, C)
    finally:
        handle.remove()
    token_scores = (grad * captured[0]).sum(-1).detach().cpu().tolist()  # (W, T)

    # wordpiece scores, summed over the windows that hold each wordpiece
    piece_scores = [[0.0] * len(e.ids) for e in encodings]
    seen = [[False] * len(e.ids) for e in encodings]
    for w, row_origins in enumerate(origins):
        for t, origin in enumerate(row_origins):
            if origin is not None:
                s, p = origin
                piece_scores[s][p] += token_scores[w][t]
                seen[s][p] = True

    words = []
    for s, (segment, encoding) in enumerate(zip(segments, encodings)):
        merged: dict[int, dict] = {}  # word index -> its span, in wordpiece order
        for p, (word, (start, end)) in enumerate(zip(encoding.word_ids, encoding.offsets)):
            w = merged.setdefault(word, {"start": start, "end": end, "score": 0.0, "seen": False, "segment": s})
            w["start"], w["end"] = min(w["start"], start), max(w["end"], end)
            w["score"] += piece_scores[s][p]
            w["seen"] = w["seen"] or seen[s][p]
        for w in sorted(merged.values(), key=lambda w: w["start"]):
            words.append({"text": segment[w["start"]:w["end"]], **w})
    probs = logits.softmax(-1).tolist()
    return {"label": trained.label_names[best], "probabilities": dict(zip(trained.label_names, probs)),
            "method": METHOD, "target": TARGET, "words": words,
            "truncated": not all(all(s) for s in seen)}
