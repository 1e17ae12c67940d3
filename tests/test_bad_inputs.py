"""Bad inputs and faults, as a careful user meets them: each gives one `textcls: error:` line and a non-zero exit,
never a traceback, and leaves nothing half-written. One test per case of the reliability sweep (failures F1-F9,
weak messages W1-W11); the case is named in each test's docstring. This suite grows with each command.

Permission cases run the CLI in a child process without the capabilities that let root ignore file modes
(setpriv); they are skipped, with the reason, where the process can still override permissions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


DROP_OVERRIDES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                  "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged_textcls(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m textcls ARGV` in a child process that file permissions apply to."""
    prefix = DROP_OVERRIDES if os.geteuid() == 0 else []
    return subprocess.run([*prefix, sys.executable, "-m", "textcls", *argv], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def permissions_apply(tmp_path_factory) -> None:
    """Skip where file modes cannot be made to apply (root without setpriv, or a file system that ignores them)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: file permissions cannot apply")
    probe = tmp_path_factory.mktemp("probe") / "secret"
    probe.write_text("x")
    probe.chmod(0)
    prefix = DROP_OVERRIDES if os.geteuid() == 0 else []
    readable = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}).read()"],
                              capture_output=True).returncode == 0
    probe.chmod(0o600)
    if readable:
        pytest.skip("this process can read a file of mode 000: permissions cannot be tested here")


def one_error_line(out: subprocess.CompletedProcess, code: int = 2) -> str:
    assert out.returncode == code, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("textcls: error: "), out.stderr[-3000:]
    return last


# ------------------------------------------------------------------------------------------- failures F1-F9

def test_unreadable_data_folder(permissions_apply, small_imdb, tmp_path):
    """F1: a data folder without read permission: what cannot be read, and why."""
    data = tmp_path / "data"
    shutil.copytree(small_imdb, data)
    data.chmod(0)
    try:
        err = one_error_line(unprivileged_textcls("data", "inspect", "--data", str(data)))
    finally:
        data.chmod(0o755)
    assert f"cannot read '{data}': Permission denied" in err


def test_unreadable_data_file_is_not_called_damaged(permissions_apply, small_imdb, tmp_path):
    """W1: a file without read permission is not "damaged, truncated or not CSV": it cannot be read."""
    data = tmp_path / "data"
    shutil.copytree(small_imdb, data)
    (data / "train.parquet").chmod(0)
    err = one_error_line(unprivileged_textcls("data", "inspect", "--data", str(data)))
    assert "cannot read" in err and "Permission denied" in err and "damaged" not in err


@pytest.mark.parametrize("argv, flag", [
    (["model", "info", "bert-tiny", "--init", "random", "--hidden-dropout", "1.5"], "--hidden-dropout"),
    (["model", "info", "bert-tiny", "--init", "random", "--attention-dropout", "-0.5"], "--attention-dropout"),
])
def test_dropout_out_of_range(argv, flag, cli):
    """F2 (model info): dropout is a probability in [0, 1)."""
    err = cli.error(*argv)
    assert f"{flag} must be within [0, 1)" in err and f"model.{flag[2:].replace('-', '_')}" in err


def test_dropout_out_of_range_starts_no_run(train_argv, cli, tmp_path):
    """F2 (train): refused before any run folder exists."""
    err = cli.error(*train_argv(tmp_path / "run", "--attention-dropout", "-0.5"))
    assert "--attention-dropout must be within [0, 1), got -0.5" in err
    assert not (tmp_path / "run").exists()


def test_read_only_parent_of_the_output(permissions_apply, imdb_dir, tiny_model, tmp_path):
    """F3: the run folder cannot be made: one line, nothing written."""
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        out = unprivileged_textcls("train", "--data", str(imdb_dir), "--model", str(tiny_model), "--init", "random",
                                   "--tokenizer", "minilm-l6", "--output", str(parent / "run"))
    finally:
        parent.chmod(0o755)
    err = one_error_line(out)
    assert f"could not write '{parent / 'run'}': Permission denied" in err
    assert not list(parent.iterdir())


def test_read_only_cache_dir(permissions_apply, small_imdb, tiny_model, tmp_path):
    """F4: the tokenization cache cannot be written: one line that names the folder and --cache-dir."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        out = unprivileged_textcls("train", "--data", str(small_imdb), "--model", str(tiny_model), "--init",
                                   "random", "--tokenizer", "minilm-l6", "--max-length", "64", "--cache-dir",
                                   str(cache), "--output", str(tmp_path / "run"))
    finally:
        cache.chmod(0o755)
    err = one_error_line(out)
    assert "could not write" in err and "Permission denied" in err and "--cache-dir" in err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB file system (tmpfs), where a tokenized split does not fit; skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root or a mount namespace) to fill a disk for real")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_under_the_cache(tiny_disk, imdb_dir, tiny_model, train_argv, cli, tmp_path):
    """F5: the disk fills while tokenizing: one line, and no temp file or half Arrow file left in the cache."""
    argv = ["train", "--data", str(imdb_dir), "--model", str(tiny_model), "--init", "random", "--tokenizer",
            "minilm-l6", "--max-train-samples", "2000", "--max-length", "128", "--cache-dir", str(tiny_disk),
            "--output", str(tmp_path / "run")]
    err = cli.error(*argv)
    assert "No space left on device (the disk is full: free some space)" in err and "--cache-dir" in err
    assert [p.name for p in (tiny_disk / "tokenized").iterdir()] == []
    assert not (tmp_path / "run").exists()


def test_safetensors_error_while_saving_a_checkpoint(train_argv, cli, tmp_path, monkeypatch):
    """F6: safetensors reports a full disk in its own error type: the same one line as an OSError, and
    the previous checkpoint stays."""
    from safetensors import SafetensorError

    import textcls.train.checkpoint

    save_file = textcls.train.checkpoint.save_file
    calls = []

    def full_after_first_checkpoint(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:  # the first checkpoint (model: save_model; optimizer and one RNG file) went through
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')
        return save_file(*args, **kwargs)

    monkeypatch.setattr(textcls.train.checkpoint, "save_file", full_after_first_checkpoint)
    out = tmp_path / "run"
    err = cli.error(*train_argv(out, "--max-steps", "4", "--save-steps", "2", "--eval-strategy", "no"))
    assert "checkpoint at step 4: could not write" in err and "No space left on device" in err
    assert "--resume" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{2:07d}"]


def test_a_cache_file_changed_in_place_is_tokenized_again(trained_run, small_imdb, cli, tmp_path, caplog):
    """F7: 4,000 bytes of a cached split overwritten in place (same size): noticed by its checksum, tokenized
    again with a warning, and the metrics are those of the intact data."""
    argv = ["evaluate", str(trained_run), "--data", str(small_imdb), "--cache-dir", str(tmp_path)]
    first = cli.json(*argv)
    (arrow,) = (tmp_path / "tokenized").glob("test-*.arrow")
    data = bytearray(arrow.read_bytes())
    data[1000:5000] = bytes(4000 * [7])  # token ids 7 and lengths 7: in range, so nothing else would notice
    arrow.write_bytes(bytes(data))
    again = cli.json(*argv)
    assert "was changed after it was written" in caplog.text
    assert again["accuracy"] == first["accuracy"] and again["loss"] == pytest.approx(first["loss"])
    cli.json(*argv)  # and the rebuilt entry is trusted again
    assert caplog.text.count("was changed after it was written") == 1


def test_a_run_folder_is_locked_by_its_run(train_argv, cli, tmp_path):
    """F8: a second run into the folder of a run that is going on fails at once, saying which process has it."""
    from textcls.train.rundir import RunLock

    out = tmp_path / "run"
    lock = RunLock(out).acquire()  # as the first run holds it
    try:
        err = cli.error(*train_argv(out))
    finally:
        lock.release()
    assert f"'{out}' is in use by another textcls run (process {os.getpid()} on" in err
    assert [p.name for p in out.iterdir()] == [".lock"]  # nothing of the second run


def test_the_lock_of_a_dead_run_holds_no_one(train_argv, cli, tmp_path):
    """F8: the lock file a killed run leaves behind is not in force (the lock is the process's, not the file's)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("process 999999 on a-host, since 2026-01-01 00:00:00")
    summary = cli.ok(train_argv(out, "--max-steps", "2", "--eval-strategy", "no", "--eval-splits"))
    assert summary["steps"] == 2


def test_two_runs_started_together_into_one_folder(imdb_dir, tiny_model, token_cache, tmp_path):
    """F8, as it happened: two processes with the same --output; exactly one trains, the other fails at once."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "textcls", "-q", "train", "--data", str(imdb_dir), "--model", str(tiny_model),
            "--init", "random", "--tokenizer", "minilm-l6", "--max-train-samples", "64", "--max-eval-samples", "32",
            "--max-length", "64", "--batch-size", "8", "--cache-dir", str(token_cache), "--output", str(out),
            "--max-steps", "6", "--logging-steps", "2", "--eval-strategy", "no", "--eval-splits"]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    (err,) = [e for rc, e in results if rc == 2]
    assert "is in use by another textcls run" in err and "Traceback" not in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]  # one run's records, once


def test_predict_error_path_exits_cleanly(trained_run, tmp_path):
    """F9: an error found while reading an --input file (pyarrow's threads busy) ends with exit 2, not an abort."""
    (tmp_path / "nan_text.csv").write_text("text,label\nhello,1\n,0\nworld,1\n")
    for _ in range(2):
        out = subprocess.run([sys.executable, "-m", "textcls", "predict", str(trained_run), "--input",
                              str(tmp_path / "nan_text.csv"), "--output", str(tmp_path / "p.jsonl")],
                             capture_output=True, text=True, timeout=300)
        assert "have an empty text in column 'text'" in one_error_line(out)
        assert "terminate called" not in out.stderr
    assert not (tmp_path / "p.jsonl").exists()


# ------------------------------------------------------------------------------------------- weak messages W2-W11

def test_labels_mixing_ids_and_names_are_refused_with_counts(imdb_rows, cli, tmp_path):
    """W2: 0/1 beside neg/pos would train a 4-class model: refused, with the counts."""
    df = imdb_rows.assign(label=["0", "1", "neg", "pos"] * 10)
    df.to_csv(tmp_path / "train.csv", index=False)
    err = cli.error("data", "inspect", "--data", str(tmp_path / "train.csv"))
    assert "the train labels mix numbers and names (0: 10, 1: 10, neg: 10, pos: 10)" in err


def test_json_lines_with_mixed_label_types(cli, tmp_path):
    """W3: the same mix in JSON Lines is not "damaged": the label column mixes types, from which line."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": "neg"}\n')
    err = cli.error("data", "inspect", "--data", str(path))
    assert "column 'label'" in err and "mixes types: number values, then string ones (line 2)" in err
    assert "damaged" not in err


@pytest.mark.parametrize("blank", ["   ", "\u200b\u200c", "\u200e\u200f\u202a\u2066", "\ufeff\u00a0\u3000"])
def test_invisible_texts_are_empty_texts(blank, imdb_rows, cli, tmp_path):
    """W4: a text of zero-width or bidi characters is as empty as one of spaces, in data and in predict."""
    df = imdb_rows.copy()
    df.loc[3, "text"] = blank
    df.to_csv(tmp_path / "train.csv", index=False)
    err = cli.error("data", "inspect", "--data", str(tmp_path / "train.csv"))
    assert "1 of 40 rows" in err and "have an empty or missing text" in err and "(first: row index 3)" in err


def test_invisible_text_argument_to_predict(trained_run, cli):
    """W4 (predict): a TEXT argument with nothing to read."""
    err = cli.error("predict", str(trained_run), "a fine film", "\u200b\u200e")
    assert "text 2 has nothing to read" in err


def test_label_names_beyond_the_data_say_which_label_has_no_rows(small_imdb, train_argv, cli, tmp_path, caplog):
    """W5: --label-names neg pos neutral on a 2-label dataset says 'neutral' has no rows, and macro-F1 is over the
    labels that occur (not pulled down by the empty class)."""
    summary = cli.ok([*train_argv(tmp_path / "run", "--max-steps", "2", "--eval-strategy", "no"),
                      "--label-names", "neg", "pos", "neutral"])
    assert "label 'neutral' has no rows in train" in caplog.text
    test = summary["metrics"]["test"]
    assert list(test["per_class"]) == ["neg", "pos", "neutral"]
    f1 = [c["f1"] for name, c in test["per_class"].items() if name != "neutral"]
    assert test["macro_f1"] == pytest.approx(sum(f1) / 2)


def test_model_info_of_a_run_folder(trained_run, cli):
    """W6: a run folder is accepted wherever a model folder is: its exported model/."""
    info = cli.json("model", "info", str(trained_run))
    assert info["labels"] == ["0", "1"] and info["architecture"]["hidden_size"] == 128  # small_imdb: ids 0, 1


def test_config_that_is_a_folder(train_argv, cli, tmp_path):
    """W7: --config FOLDER says it is a folder."""
    err = cli.error(*train_argv(tmp_path / "run"), "--config", str(tmp_path))
    assert f"config file '{tmp_path}' is a folder" in err


def test_resume_with_the_other_command(trained_run, cli, tmp_path):
    """W8: pretrain --resume on a fine-tuning run says which command made it, not a list of settings."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    err = cli.error("pretrain", "--resume", str(run))
    assert f"'{run}' is a `textcls train` run, not a `textcls pretrain` one; resume it with `textcls train " \
           f"--resume {run}`" in err


def test_ctrl_c_says_how_to_resume_on_a_line_of_its_own(train_argv, cli, tmp_path, monkeypatch):
    """W9: Ctrl-C stops with exit 130, on its own line after the progress bar, naming the last checkpoint and
    the command that continues the run."""
    from textcls.train.loop import Trainer

    after = Trainer.after_optimizer_step

    def interrupt_at_step_5(self, grad_norm):
        done = after(self, grad_norm)
        if self.state.step == 5:
            raise KeyboardInterrupt
        return done

    monkeypatch.setattr(Trainer, "after_optimizer_step", interrupt_at_step_5)
    out = tmp_path / "run"
    rc, err = cli.run(train_argv(out, "--save-steps", "2", "--eval-strategy", "no"))
    assert rc == 130
    last = err.splitlines()[-1]
    assert last == (f"textcls: error: interrupted at step 5 of 24; the last checkpoint is step 4; continue from "
                    f"there with `textcls train --resume {out}`")


def test_predict_reads_other_encodings(trained_run, cli, tmp_path):
    """W10: predict takes --encoding, which its own advice names."""
    path = tmp_path / "reviews.txt"
    path.write_bytes("Un film très réussi.\nUne catastrophe.\n".encode("latin-1"))
    err = cli.error("predict", str(trained_run), "--input", str(path))
    assert "not valid utf-8" in err and "--encoding latin-1" in err
    rows = cli.json("predict", str(trained_run), "--input", str(path), "--encoding", "latin-1")
    assert [r["text"] for r in rows] == ["Un film très réussi.", "Une catastrophe."]


def test_sweep_checks_every_combination_first(small_imdb, cli, tmp_path):
    """W11: a value that cannot work is refused before the first run starts."""
    out = tmp_path / "sweep"
    err = cli.error("sweep", "--set", "batch_size=8,0", "--data", str(small_imdb), "--model", "bert-tiny", "--init",
                    "random", "--tokenizer", "minilm-l6", "--output", str(out))
    assert "--batch-size must be at least 1, got 0" in err
    assert not out.exists()


def test_sweep_with_a_failed_run_exits_non_zero(small_imdb, cli, tmp_path):
    """W11: the sweep goes on after a run fails, reports it, and exits 2 (fp16 needs a GPU: it fails on this CPU
    when the run starts)."""
    from textcls.cli import main

    out = tmp_path / "sweep"
    rc = main(["sweep", "--set", "mixed_precision=no,fp16", "--data", str(small_imdb), "--model", "bert-tiny",
               "--init", "random", "--tokenizer", "minilm-l6", "--max-length", "32", "--max-steps", "2",
               "--batch-size", "8", "--eval-strategy", "no", "--output", str(out), "--cache-dir",
               str(tmp_path / "cache"), "--json"])
    captured = cli.capsys.readouterr()
    assert rc == 2 and "textcls: error: 1 of 2 sweep runs failed" in captured.err.splitlines()[-1]
    result = json.loads(captured.out)
    assert [("error" in r) for r in result["runs"]] == [False, True] and result["failed"] == 1

