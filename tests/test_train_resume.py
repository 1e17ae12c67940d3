"""A run that dies keeps what it had: --resume after SIGKILL equals an uninterrupted run; a NaN loss or a full disk
stops the run with a message and leaves the last checkpoint intact."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import textcls.train.checkpoint
from textcls.model import BertClassifier
from textcls.train.loop import Trainer

TESTS = Path(__file__).parent
DETERMINISM_ENV = ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "ASCEND_LAUNCH_BLOCKING", "HCCL_DETERMINISTIC",
                   "FLASH_ATTENTION_DETERMINISTIC")


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before the point to kill it"
        assert time.monotonic() < deadline, "the run did not reach the point to kill it in time"
        time.sleep(0.05)


def _comparable(records: list[dict]) -> list[dict]:
    """The records without their timings."""
    return [{k: v for k, v in r.items() if k != "examples_per_s"} for r in records]


def test_resume_after_sigkill_equals_uninterrupted_run(train_argv, cli, read_jsonl, model_weights, tmp_path,
                                                       monkeypatch):
    """2 epochs of 8 steps with dropout, checkpoints every 3 steps: killed at step 13 (epoch 2, the last checkpoint
    at step 12), resumed, it ends with the same weights, metrics and log as a run that was never interrupted."""
    for name in DETERMINISM_ENV:  # --deterministic in this process sets them; put them back afterwards
        monkeypatch.delenv(name, raising=False)
    flags = ("--epochs", "2", "--save-steps", "3", "--logging-steps", "1", "--deterministic", "--learning-rate",
             "1e-3", "--save-total-limit", "3")
    ref, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    try:
        ref_summary = cli.ok(train_argv(ref, *flags))
    finally:
        torch.use_deterministic_algorithms(False)

    log_file = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, str(TESTS / "slow_train.py"), "13", "120",
                             *train_argv(killed, *flags)],
                            stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        _wait_for(lambda: (killed / "checkpoints" / f"step-{12:07d}").is_dir() and any(
            r["step"] == 13 for r in read_jsonl(killed / "metrics.jsonl")), proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        log_file.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    # the progress bar: steps done of all, elapsed<remaining, live loss and throughput
    assert re.search(r"training: .*13/16 \[\d\d:\d\d<\d\d:\d\d.*ex_s=\d+, loss=\d\.\d{4}", (tmp_path / "stderr.txt")
                     .read_text())

    resumed = subprocess.run([sys.executable, "-m", "textcls", "train", "--resume", str(killed)],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: continuing from {killed / 'checkpoints' / f'step-{12:07d}'} (step 12; epoch 2, batch 4)" \
        in resumed.stderr

    ref_log, killed_log = read_jsonl(ref / "metrics.jsonl"), read_jsonl(killed / "metrics.jsonl")
    assert [r["step"] for r in killed_log if r["kind"] == "train"] == list(range(1, 17))  # 13 logged once
    assert _comparable(killed_log) == _comparable(ref_log)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["final"] == ref_summary["final"] and summary["best_validation"] == ref_summary["best_validation"]
    ref_weights, weights = model_weights(ref / "model"), model_weights(killed / "model")
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(train_argv, cli, tmp_path, monkeypatch):
    forward, calls, trainers = BertClassifier.forward, [], []

    def nan_at_third_step(self, *args, labels=None, **kwargs):
        out = forward(self, *args, labels=labels, **kwargs)
        if labels is not None and self.training:
            calls.append(1)
            if len(calls) == 3:
                out.loss = out.loss * float("nan")
        return out

    train = Trainer.train
    monkeypatch.setattr(BertClassifier, "forward", nan_at_third_step)
    monkeypatch.setattr(Trainer, "train", lambda self: trainers.append(self) or train(self))
    out = tmp_path / "run"
    rc, err = cli.run(train_argv(out, "--max-steps", "6", "--save-steps", "2", "--eval-strategy", "no"))
    assert rc == 2
    last = out / "checkpoints" / f"step-{2:07d}"
    assert "the training loss became nan at step 3 (epoch 1)" in err and f"the last good checkpoint is {last}" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == [last.name]  # nothing half-written beside it
    assert not (out / "summary.json").exists()
    assert all(torch.isfinite(p).all() for p in trainers[0].model.parameters())  # the NaN never reached them

    from textcls.model import build_classifier
    from textcls.train.loop import adamw

    model, _ = build_classifier(trainers[0].cfg.model, ["0", "1"], max_length=64)
    state = textcls.train.checkpoint.load_training_state(last, model, adamw(model, trainers[0].tc))
    assert state["step"] == 2 and all(torch.isfinite(p).all() for p in model.parameters())


def test_full_disk_while_saving_keeps_the_previous_checkpoint(train_argv, cli, read_jsonl, tmp_path, monkeypatch):
    save_file = textcls.train.checkpoint.save_file

    def disk_full_at_step_4(tensors, filename, metadata=None):
        if "step-0000004" in filename:
            save_file(tensors, filename, metadata=metadata)  # a part of the file lands, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(textcls.train.checkpoint, "save_file", disk_full_at_step_4)
    out = tmp_path / "run"
    argv = train_argv(out, "--max-steps", "6", "--save-steps", "2", "--eval-strategy", "no")
    rc, err = cli.run(argv)
    assert rc == 2
    assert "checkpoint at step 4: could not write" in err and "No space left on device" in err
    assert f"continue the run with --resume {out}" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{2:07d}"]  # no temp folder left

    monkeypatch.undo()  # space freed: the run goes on from the checkpoint that survived
    rc, err = cli.run(["train", "--resume", str(out)])
    assert rc == 0, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "train"] == [6]  # the last window
