"""Classification metrics from logits and labels (scikit-learn does the counting)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, label_names: list[str]) -> dict:
    """Accuracy, macro-F1 (over the labels that occur), per-class precision/recall/F1/support, confusion matrix and
    mean cross-entropy loss.

    logits: (N, C) float, labels: (N,) long. Rows of the confusion matrix are true labels, columns predictions."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = labels.cpu().numpy()
    y_pred = logits.argmax(-1).cpu().numpy()
    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    # Macro-F1 over the labels that occur (true or predicted), as scikit-learn's default: a label of the model that
    # the data never has and the model never predicts says nothing about either.
    seen = np.isin(ids, np.concatenate([y_true, y_pred]))
    return {
        "loss": F.cross_entropy(logits.float(), labels).item(),
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(np.mean(f1[seen])),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(label_names, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "examples": int(len(y_true)),
    }


def is_better(metric: str, new: float, best: float | None) -> bool:
    """Loss (and mean squared error) improves downwards, every other metric upwards."""
    if best is None:
        return True
    return new < best if metric in ("loss", "mse") else new > best


# ------------------------------------------------------------------------------------------- other problem types

# What a run logs of an evaluation (metrics.jsonl, the summary's `final`), by problem type.
LOGGED_METRICS = {"single-label": ("loss", "accuracy", "macro_f1"),
                  "multi-label": ("loss", "micro_f1", "macro_f1", "exact_match"),
                  "regression": ("loss", "pearson", "spearman", "mse")}
# --metric-for-best values that each problem type has; "accuracy" (the default) stands for the first one.
BEST_METRICS = {"single-label": ("accuracy", "macro_f1", "loss"),
                "multi-label": ("micro_f1", "macro_f1", "loss"),
                "regression": ("pearson", "spearman", "mse", "loss")}


def best_metric(metric: str, problem_type: str) -> str:
    """The validation metric that picks the best checkpoint: --metric-for-best, its default ("accuracy") read as
    the problem type's first metric (multi-label: micro_f1; regression: pearson)."""
    from textcls.errors import TextclsError

    allowed = BEST_METRICS[problem_type]
    if metric == "accuracy" and problem_type != "single-label":
        return allowed[0]
    if metric not in allowed:
        raise TextclsError(f"--metric-for-best {metric} is not a {problem_type} metric; choose one of: "
                           f"{', '.join(allowed)}")
    return metric


def problem_metrics(problem_type: str, logits: torch.Tensor, labels: torch.Tensor, label_names: list[str],
                    thresholds=None) -> dict:
    """The metrics of `problem_type` (single-label: classification_metrics; multi-label: multilabel_metrics at
    `thresholds`; regression: regression_metrics)."""
    if problem_type == "multi-label":
        return multilabel_metrics(logits, labels, label_names, thresholds)
    if problem_type == "regression":
        return regression_metrics(logits, labels)
    return classification_metrics(logits, labels, label_names)


def _thresholds(thresholds, n: int) -> np.ndarray:
    """(n,) decision thresholds: one for every label, the same for all, or 0.5."""
    if thresholds is None:
        return np.full(n, 0.5)
    return np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (n,)).copy()


def multilabel_metrics(logits: torch.Tensor, labels: torch.Tensor, label_names: list[str], thresholds=None) -> dict:
    """Micro- and macro-F1 (macro over the labels that occur, true or predicted), exact-match ratio (rows whose
    predicted set is their set), per-label precision/recall/F1/support and the mean binary cross-entropy loss. A
    label is predicted when its sigmoid probability is above its threshold (default 0.5).

    logits: (N, L) float, labels: (N, L) 0/1."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true = labels.cpu().numpy().astype(bool)  # (N, L)
    probs = torch.sigmoid(logits.float()).cpu().numpy()  # (N, L)
    t = _thresholds(thresholds, len(label_names))
    y_pred = probs > t  # (N, L)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    micro = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)[2]
    seen = y_true.any(0) | y_pred.any(0)
    return {
        "loss": F.binary_cross_entropy_with_logits(logits.float(), labels.float()).item(),
        "micro_f1": float(micro),
        "macro_f1": float(np.mean(f1[seen])) if seen.any() else 0.0,
        "exact_match": float((y_true == y_pred).all(1).mean()) if len(y_true) else 0.0,
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s),
                             "threshold": float(th)}
                      for name, p, r, f, s, th in zip(label_names, precision, recall, f1, support, t)},
        "examples": int(len(y_true)),
    }


def regression_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Pearson's and Spearman's correlation of the predictions with the targets (scipy), their mean squared error
    (also the loss, as training minimises it). A correlation is 0 where it is undefined (constant predictions).

    logits: (N, 1) float, labels: (N,) float."""
    import warnings

    from scipy.stats import ConstantInputWarning, pearsonr, spearmanr

    pred = logits.float().reshape(len(logits), -1)[:, 0].cpu().numpy().astype(np.float64)  # (N,)
    y = labels.float().cpu().numpy().astype(np.float64)  # (N,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        pearson = float(pearsonr(pred, y)[0]) if len(y) > 1 else float("nan")
        spearman = float(spearmanr(pred, y)[0]) if len(y) > 1 else float("nan")
    mse = float(np.mean((pred - y) ** 2)) if len(y) else 0.0
    return {"loss": mse, "pearson": 0.0 if np.isnan(pearson) else pearson,
            "spearman": 0.0 if np.isnan(spearman) else spearman, "mse": mse, "examples": int(len(y))}


def tune_thresholds(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """For each label, the decision threshold that maximises its F1 on these rows (validation): the midpoint between
    two consecutive distinct probabilities, so that the rows above it are predicted; ties go to the threshold
    nearest 0.5. A label without a positive row keeps 0.5 (no F1 to maximise).

    logits: (N, L), labels: (N, L) 0/1."""
    probs = torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)  # (N, L)
    y = labels.cpu().numpy().astype(bool)  # (N, L)
    out = []
    for j in range(probs.shape[1]):
        p, t = probs[:, j], y[:, j]
        positives = int(t.sum())
        if positives == 0:
            out.append(0.5)
            continue
        order = np.argsort(-p, kind="stable")
        ps, tp = p[order], np.cumsum(t[order])  # (N,): the k+1 most probable rows predicted: tp[k] true positives
        k = np.arange(1, len(ps) + 1)
        cut = np.append(ps[1:] < ps[:-1], True)  # a threshold can fall between row k-1 and k
        below = np.append(ps[1:], 0.0)
        candidates = np.clip((ps + below) / 2, 1e-6, 1 - 1e-6)[cut]
        f1 = (2 * tp / (k + positives))[cut]
        default = 2 * t[p > 0.5].sum() / ((p > 0.5).sum() + positives)
        candidates, f1 = np.append(candidates, 0.5), np.append(f1, default)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        out.append(float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]]))
    return out
