"""The run directory: where one training run keeps its config, metrics, checkpoints, plots and final model.

    RUN/config.json           the resolved RunConfig (reload with --config, or continue with --resume RUN)
    RUN/run.json              which command made the run (train, pretrain), and the textcls version
    RUN/metrics.jsonl         one JSON object per logging step or evaluation
    RUN/checkpoints/step-N/   training state (see checkpoint.py), written atomically
    RUN/model/                the final classifier, loadable by textcls and by transformers
    RUN/plots/*.png           training loss, learning rate, evaluation metrics
    RUN/summary.json          final and best metrics, time, where things are
    RUN/tensorboard/          with --tensorboard
    RUN/.lock                 held by the process that runs in the folder (see RunLock)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable, Optional

from textcls.config import RunConfig
from textcls.errors import TextclsError
from textcls.io import atomic_write_text, writing

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
MODEL = "model"
LOCK = ".lock"
RUN_INFO = "run.json"
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
    if path.exists() and (not path.is_dir() or any(p.name != LOCK for p in path.iterdir())):
        raise TextclsError(f"--output {str(path)!r} exists and is not an empty folder; choose a new one")


class RunLock:
    """The lock of a run folder, held by the process that trains in it from start to end, so that a second run or
    a resume with the same folder fails at once instead of writing into it too. It is an flock on RUN/.lock: the
    operating system releases it when the process ends, however it ends, so the file a killed run leaves behind
    does not hold anyone up. The file tells who holds the lock."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.created = False  # whether acquire() made the folder (then a run that fails in setup removes it)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        import fcntl

        with writing(self.run_dir, "no run was started"):
            self.created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise TextclsError(f"{str(self.run_dir)!r} is in use by another textcls run ({holder}); wait for it to "
                               f"end, or choose another --output") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     .encode())
        self._fd = fd
        return self

    def release(self, failed_in_setup: bool = False) -> None:
        """Let go of the folder (closing the file releases the flock; the file stays, holding no one); after a run
        that failed before writing anything, remove the folder it made."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if failed_in_setup and self.created and [p.name for p in self.run_dir.iterdir()] == [LOCK]:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def model_of(path: Path) -> Path:
    """The model folder a path stands for: a run's exported model (RUN/model), or the path itself. A run that has
    not finished has none yet: that is an error that says how to finish it."""
    if not is_run_dir(path):
        return path
    if not (path / MODEL).is_dir():
        raise TextclsError(f"run {str(path)!r} has no exported model yet (it did not finish); resume it with "
                           f"`textcls {run_command(path)} --resume {path}`")
    return path / MODEL


def load_run_config(path: Path) -> RunConfig:
    if not path.is_dir():
        raise TextclsError(f"run directory {str(path)!r} does not exist")
    if not is_run_dir(path):
        raise TextclsError(f"{str(path)!r} is not a textcls run directory (it has no {CONFIG} and {METRICS}); "
                           f"give a folder that `textcls train` wrote")
    return RunConfig.load(path / CONFIG)


def write_run_info(run_dir: Path, command: str) -> None:
    from textcls import __version__
    atomic_write_text(run_dir / RUN_INFO, json.dumps({"command": command, "textcls": __version__}) + "\n")


def run_command(run_dir: Path) -> str:
    """The command that made a run: `train` or `pretrain` (runs older than run.json: train)."""
    try:
        return json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))["command"]
    except (OSError, ValueError, KeyError):
        return "train"


def check_resumable(path: Path, cfg: RunConfig, command: str = "train") -> None:
    """The run must have been made by `command`, and `cfg` must be its own config (but for RESUME_MAY_DIFFER): a
    resumed run continues the same training."""
    saved_cfg = load_run_config(path)
    made_by = run_command(path)
    if made_by != command:
        raise TextclsError(f"{str(path)!r} is a `textcls {made_by}` run, not a `textcls {command}` one; resume it with "
                           f"`textcls {made_by} --resume {path}`")
    saved, given = saved_cfg.to_dict(), cfg.to_dict()
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
        with writing(self.path, "the records before this one are kept"), self.path.open("a", encoding="utf-8") as f:
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
