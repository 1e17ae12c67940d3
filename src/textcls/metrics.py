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
    """Loss improves downwards, every other metric upwards."""
    if best is None:
        return True
    return new < best if metric == "loss" else new > best
