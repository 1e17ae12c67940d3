"""PNG plots of a run's metrics.jsonl (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from textcls.io import atomic_path

EVAL_KEYS = ("accuracy", "macro_f1", "loss")


def _series(records: list[dict], kind: str, key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in records if r.get("kind") == kind and r.get(key) is not None]
    return [r["step"] for r in rows], [r[key] for r in rows]


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_run(records: list[dict], out_dir: Path, metrics: tuple[str, ...] = ("accuracy", "macro_f1")) -> list[Path]:
    """loss.png (training loss, and validation loss at each evaluation), lr.png, eval.png (the validation `metrics`,
    when evaluated: accuracy and macro-F1 of a classifier, perplexity of a masked LM); returns the files."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*_series(records, "train", "loss"), label="train")
    ax.plot(*_series(records, "eval", "loss"), "o-", label="validation")
    ax.set(xlabel="optimizer step", ylabel="cross-entropy loss", title="Loss")
    ax.legend()
    _save(fig, out_dir / "loss.png")
    written.append(out_dir / "loss.png")

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(*_series(records, "train", "lr"))
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate")
    _save(fig, out_dir / "lr.png")
    written.append(out_dir / "lr.png")

    scores = [key for key in metrics if _series(records, "eval", key)[0]]
    if scores:
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in scores:
            ax.plot(*_series(records, "eval", key), "o-", label=key)
        ax.set(xlabel="optimizer step", ylabel="validation", title="Evaluation")
        ax.legend()
        _save(fig, out_dir / "eval.png")
        written.append(out_dir / "eval.png")
    return written


def plot_sweep(runs: dict[str, list[dict]], metric: str, path: Path) -> Path:
    """Training loss and the validation `metric` of several runs side by side, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, records in runs.items():
        left.plot(*_series(records, "train", "loss"), label=label)
        right.plot(*_series(records, "eval", metric), "o-", label=label)
    left.set(xlabel="optimizer step", ylabel="training loss", title="Training loss")
    right.set(xlabel="optimizer step", ylabel=f"validation {metric}", title=f"Validation {metric}")
    left.legend()
    right.legend()
    _save(fig, path)
    return path
