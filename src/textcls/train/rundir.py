"""The run directory: where one training run keeps its config, metrics, checkpoints, plots and final model.

    RUN/config.json           the resolved RunConfig (reload with --config, or continue with --resume RUN)
    RUN/metrics.jsonl         one JSON object per logging step or evaluation
    RUN/checkpoints/step-N/   training state (see checkpoint.py), written atomically
    RUN/model/                the final classifier, loadable by textcls and by transformers
    RUN/plots/*.png           training loss, learning rate, evaluation metrics
    RUN/summary.json          final and best metrics, time, where things are
    RUN/tensorboard/          with --tensorboard
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Iterable

from textcls.config import RunConfig
from textcls.errors import TextclsError
from textcls.io import atomic_write_text

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
MODEL = "model"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Settings that may differ when a run is resumed: where the run lives is given by --resume itself.
RESUME_MAY_DIFFER = {("train", "output")}


def default_run_dir(cfg: RunConfig) -> Path:
    name = cfg.train.name or f"{Path(cfg.model.model).name}-{Path(cfg.data.data or 'data').name}"
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-")
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / METRICS).exists()


def check_new_run_dir(path: Path) -> None:
    """A new run goes into a folder that does not exist or is empty: never over another run or other files."""
    if is_run_dir(path) or checkpoints(path):
        raise TextclsError(f"{str(path)!r} already holds a run; continue it with --resume {path}, or choose "
                           f"another --output")
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TextclsError(f"--output {str(path)!r} exists and is not an empty folder; choose a new one")


def load_run_config(path: Path) -> RunConfig:
    if not path.is_dir():
        raise TextclsError(f"run directory {str(path)!r} does not exist")
    if not is_run_dir(path):
        raise TextclsError(f"{str(path)!r} is not a textcls run directory (it has no {CONFIG} and {METRICS}); "
                           f"give a folder that `textcls train` wrote")
    return RunConfig.load(path / CONFIG)


def check_resumable(path: Path, cfg: RunConfig) -> None:
    """`cfg` must be the run's own config (but for RESUME_MAY_DIFFER): a resumed run continues the same training."""
    saved, given = load_run_config(path).to_dict(), cfg.to_dict()
    diff = [f"{sec}.{key}: the run has {value!r}, given {given[sec][key]!r}"
            for sec, values in saved.items() for key, value in values.items()
            if (sec, key) not in RESUME_MAY_DIFFER and given[sec][key] != value]
    if diff:
        raise TextclsError(f"--resume {path}: the given settings differ from the run's {CONFIG}: {'; '.join(diff)}. "
                           f"Resume with the run's settings (`textcls train --resume {path}` needs no others), or "
                           f"start a new run with --output")


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first. Temp folders of an interrupted save never match the name pattern."""
    folder = run_dir / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name))] \
        if folder.is_dir() else []
    return sorted(found)


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:07d}"


def remove_partial_checkpoints(run_dir: Path) -> None:
    """Delete the temp folders of saves that a killed process left behind (io.atomic_dir names them `.NAME.*`)."""
    folder = run_dir / CHECKPOINTS
    for path in folder.glob(".*") if folder.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)


def prune_checkpoints(run_dir: Path, limit: int | None, keep: Iterable[Path]) -> None:
    """Delete the oldest checkpoints beyond `limit`, never one in `keep` (the best, the newest)."""
    if limit is None:
        return
    keep = {Path(k).resolve() for k in keep if k}
    found = checkpoints(run_dir)
    excess = len(found) - max(limit, len(keep))
    for _, path in found:
        if excess <= 0:
            break
        if path.resolve() not in keep:
            shutil.rmtree(path, ignore_errors=True)
            excess -= 1


class MetricsLog:
    """Appends records to metrics.jsonl, one write per record, so a killed run keeps what it logged."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        """The records; a last line cut short by a killed process is left out."""
        if not self.path.is_file():
            return []
        lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise TextclsError(f"{str(self.path)!r} line {i + 1} is not JSON: {line[:80]!r}") from None
        return records

    def truncate_after(self, step: int) -> None:
        """Keep the records up to `step` (a resumed run logs the later steps again), without a final evaluation."""
        kept = [r for r in self.read() if r.get("step", 0) <= step and r.get("kind") != "final"]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
