"""Which words pushed the prediction: gradient x input on the word embeddings (Shrikumar et al. 2016; Denil et al.
2014), per word.

For one text: e = the word embeddings of its tokens (B windows, T tokens, C hidden), y = the explained output:
- single-label: the log-probability of a label (by default the predicted one);
- multi-label: the log-odds (logit) of a label (by default the most probable one): each label is its own yes/no
  decision, and its log-odds is what its sigmoid and threshold read;
- regression: the predicted score.
A token's score is sum over C of dy/de * e: the first-order share of y that its word vector carries (positive:
towards the label, or raising the score; negative: against it, or lowering it). Wordpieces are then merged into the
words of the tokenizer's pre-tokenizer, with their character offsets in the text.

The text is tokenized exactly as the model sees it in predict (the same encoder, truncation and special tokens);
words that truncation cut off get score 0 and `seen: false`. With --truncation chunks the prediction is the mean
of the windows' logits, as in predict, and a wordpiece that two windows share gets both of its gradients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from textcls.errors import TextclsError

if TYPE_CHECKING:
    from textcls.infer.model import TrainedModel

METHOD = "gradient x input"
TARGETS = {"single-label": "log-probability of the explained label", "multi-label": "log-odds of the explained label",
           "regression": "predicted score"}


def _origins(template: tuple, kept: tuple[list[int], ...]) -> list[Optional[tuple[int, int]]]:
    """Where each token of a model row comes from: (segment, wordpiece position), or None for a special token;
    laid out by the encoder's special-tokens template, as ExampleEncoder.assemble lays out the ids."""
    out: list[Optional[tuple[int, int]]] = []
    for segment, _, _ in template:
        out += [None] if segment is None else [(segment, p) for p in kept[segment]]
    return out


def explain(trained: "TrainedModel", text: str, pair: Optional[str] = None, label: Optional[str] = None) -> dict:
    """The prediction, as /predict gives it, and per-word scores for `text` (and its `pair`), explaining `label`
    (a classifier's; None: the predicted or most probable one; `explained` in the answer): one forward and one
    backward pass, the model's weights untouched (no .grad is left on them)."""
    import torch

    from textcls.infer.predict import prediction_rows

    if label is not None and (trained.problem_type == "regression" or label not in trained.label_names):
        raise TextclsError(f"cannot explain label {label!r}: " + (
            "a regression model has a score, not labels" if trained.problem_type == "regression" else
            f"the model's labels are {', '.join(trained.label_names)}"))

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
            target = int(logits.argmax()) if label is None else trained.label_names.index(label)
            y = logits.log_softmax(-1)[target] if trained.problem_type == "single-label" else logits[target]
            (grad,) = torch.autograd.grad(y, captured[0])  # (W, T, C)
    finally:
        handle.remove()
    # summed in fp32: a bf16 model's gradients and word vectors are bf16 (--mixed-precision bf16 casts the weights)
    token_scores = (grad.float() * captured[0].float()).sum(-1).detach().cpu().tolist()  # (W, T)

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
    prediction = prediction_rows([text], None, trained.scores(logits.detach()[None]), trained.label_names,
                                 trained.problem_type, trained.thresholds)[0]
    del prediction["text"]
    if trained.problem_type == "multi-label":
        prediction["thresholds"] = dict(zip(trained.label_names, trained.thresholds or [0.5] * len(logits)))
    explained = {} if trained.problem_type == "regression" else {"explained": trained.label_names[target]}
    return prediction | explained | {"method": METHOD, "target": TARGETS[trained.problem_type], "words": words,
                                     "truncated": not all(all(s) for s in seen)}
