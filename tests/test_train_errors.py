"""Bad input to `textcls train`: a clear message, exit status 2, and nothing corrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from textcls.cli import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(train_argv, tmp_path_factory) -> Path:
    """A complete 2-step run (checkpoint at step 2)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_argv(out, "--max-steps", "2", "--eval-strategy", "no")) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "copy"))


def _config_file(tmp_path: Path, values: dict) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("values, message", [
    ({"train": {"learnig_rate": 1e-3}}, "unknown config key 'train.learnig_rate'; did you mean 'train.learning_rate'?"),
    ({"train": {"warmup": 10}}, "unknown config key 'train.warmup'; did you mean 'train.warmup_steps' or "
                                "'train.warmup_ratio'?"),
    ({"train": {"epochs": "three"}}, "config value train.epochs='three' has the wrong type: expected int"),
    ({"train": {"max_grad_norm": "1.0"}}, "config value train.max_grad_norm='1.0' has the wrong type: expected float "
                                          "or null"),
])
def test_bad_config_file(values, message, train_argv, cli, tmp_path):
    out = tmp_path / "run"
    rc, err = cli.run(train_argv(out, "--config", _config_file(tmp_path, values)))
    assert rc == 2 and message in err
    assert not out.exists()


@pytest.mark.parametrize("name, content, message", [
    ("run.yaml", b"train: [\n", "cannot be parsed: expected the node content, but found '<stream end>' (line 2, "
                                "column 1)"),
    ("run.json", b'{"train": }', "cannot be parsed: Expecting value: line 1 column 11"),
    ("run.yaml", b"\xff\xfe", "cannot be parsed: 'utf-8' codec can't decode byte 0xff"),
])
def test_unparsable_config_file(name, content, message, train_argv, cli, tmp_path):
    (tmp_path / name).write_bytes(content)
    rc, err = cli.run(train_argv(tmp_path / "run", "--config", str(tmp_path / name)))
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_model_that_cannot_take_the_length_fails_before_tokenizing(train_argv, cli, tmp_path):
    cache = tmp_path / "cache"
    rc, err = cli.run(train_argv(tmp_path / "run", "--max-length", "4096", "--cache-dir", str(cache)))
    assert rc == 2 and "--max-length 4096 exceeds the 128 positions" in err
    assert not cache.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--learning-rate", "-1"], "--learning-rate must be at least 0, got -1.0"),
    (["--warmup-steps", "10", "--warmup-ratio", "0.1"], "give --warmup-steps (10) or --warmup-ratio (0.1), not both"),
    (["--warmup-ratio", "1.5"], "--warmup-ratio must be within [0, 1], got 1.5"),
    (["--eval-strategy", "steps"], "--eval-strategy steps needs --eval-steps N"),
    (["--eval-strategy", "no", "--early-stopping-patience", "2"], "--early-stopping-patience needs evaluations"),
    (["--validation-fraction", "0"], "has no labelled validation split to evaluate on; set --validation-fraction"),
])
def test_bad_training_settings(flags, message, train_argv, cli, tmp_path):
    out = tmp_path / "run"
    rc, err = cli.run(train_argv(out, *flags))
    assert rc == 2 and message in err
    assert not out.exists()


def test_resume_of_a_folder_that_is_not_a_run(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    rc, err = cli.run(["train", "--resume", str(tmp_path)])
    assert rc == 2 and f"{str(tmp_path)!r} is not a textcls run directory" in err
    assert _snapshot(tmp_path) == {"notes.txt": b"mine"}
    rc, err = cli.run(["train", "--resume", str(tmp_path / "missing")])
    assert rc == 2 and "does not exist" in err and not (tmp_path / "missing").exists()


def test_resume_with_other_settings_lists_the_differences(finished_run, cli):
    before = _snapshot(finished_run)
    rc, err = cli.run(["train", "--resume", str(finished_run), "--learning-rate", "0.5", "--max-length", "32",
                       "--output", "elsewhere"])
    assert rc == 2
    assert "the given settings differ from the run's config.json: tokenize.max_length: the run has 64, given 32; " \
           "train.learning_rate: the run has 0.0001, given 0.5." in err
    assert "train.output" not in err  # where the run lives is no difference
    assert _snapshot(finished_run) == before


def test_resume_ignores_the_output_setting(run_copy, cli, tmp_path):
    """--resume RUN --config FILE where FILE is the run's config with another output: the run goes on (here it is
    complete already: it is evaluated and exported again)."""
    values = json.loads((run_copy / "config.json").read_text())
    values["train"]["output"] = str(tmp_path / "elsewhere")
    rc, err = cli.run(["train", "--resume", str(run_copy), "--config", _config_file(tmp_path, values)])
    assert rc == 0, err
    assert json.loads((run_copy / "summary.json").read_text())["steps"] == 2
    assert not (tmp_path / "elsewhere").exists()


def test_resume_on_another_process_count(run_copy, cli):
    state_file = run_copy / "checkpoints" / f"step-{2:07d}" / "trainer_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "num_processes": 2}))
    rc, err = cli.run(["train", "--resume", str(run_copy)])
    assert rc == 2 and "was trained on 2 processes; resume it on as many" in err


def test_resume_from_an_unreadable_checkpoint(run_copy, cli):
    weights = run_copy / "checkpoints" / f"step-{2:07d}" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    rc, err = cli.run(["train", "--resume", str(run_copy)])
    assert rc == 2 and f"checkpoint {str(weights.parent)!r} cannot be read" in err
    assert "remove it to resume from the one before" in err


def test_existing_run_or_folder_without_resume(finished_run, train_argv, cli, tmp_path):
    before = _snapshot(finished_run)
    rc, err = cli.run(train_argv(finished_run))
    assert rc == 2 and f"already holds a run; continue it with --resume {finished_run}" in err
    assert _snapshot(finished_run) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    rc, err = cli.run(train_argv(tmp_path / "other"))
    assert rc == 2 and "exists and is not an empty folder" in err
    assert _snapshot(tmp_path / "other") == {"keep.txt": b"x"}


def test_model_folder_without_weights(train_argv, cli, tmp_path):
    argv = train_argv(tmp_path / "run")
    argv[argv.index("--init") + 1] = "pretrained"
    rc, err = cli.run(argv)
    assert rc == 2 and "has no weights" in err and "--init random" in err
    assert not (tmp_path / "run").exists()


def test_head_with_another_label_count(train_argv, cli, tiny_model, tmp_path):
    """A classifier saved for 3 labels, fine-tuned on 2-label IMDB: refused unless --reinit-head."""
    from textcls.config import ModelConfig
    from textcls.data.tokenize import load_tokenizer
    from textcls.model import build_classifier, save_classifier

    three = tmp_path / "three-labels"
    model, _ = build_classifier(ModelConfig(model=str(tiny_model), init="random"), ["a", "b", "c"], max_length=64)
    save_classifier(model, three, load_tokenizer("minilm-l6"), ["a", "b", "c"])
    argv = train_argv(tmp_path / "run", "--max-steps", "1", "--eval-strategy", "no", model=three)
    argv[argv.index("--init") + 1] = "pretrained"
    rc, err = cli.run(argv)
    assert rc == 2 and "has a classifier head for labels ['a', 'b', 'c']" in err and "--reinit-head" in err
    assert not (tmp_path / "run").exists()
    rc, err = cli.run([*argv, "--reinit-head"])
    assert rc == 0, err
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["id2label"] == {"0": "0", "1": "1"}
