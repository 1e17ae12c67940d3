"""`textcls sweep`: one run per combination, a comparison table that matches the runs' own summaries, one plot;
failed runs reported and the exit status non-zero; bad --set values, combinations that cannot work and used output
folders refused before anything runs."""

from __future__ import annotations

import json

import pytest

from textcls.train.sweep import parse_sweep, run_names

TINY = ["--model", "bert-tiny", "--init", "random", "--tokenizer", "minilm-l6", "--max-length", "32",
        "--max-steps", "4", "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps", "1",
        "--eval-strategy", "steps", "--eval-steps", "2"]


def sweep_argv(small_imdb, tmp_path, *sets) -> list[str]:
    return ["sweep", *sets, "--data", str(small_imdb), *TINY, "--output", str(tmp_path / "sweep"),
            "--cache-dir", str(tmp_path / "cache")]


def test_sweep_trains_every_combination_and_compares_them(small_imdb, tmp_path, cli):
    """The practice's warmup experiment, crossed with a precision this CPU cannot run (fp16 needs a GPU, found
    when the run starts): those runs fail, are reported, the sweep goes on, and its exit status says so."""
    argv = sweep_argv(small_imdb, tmp_path, "--set", "warmup_steps=0,3", "--set", "mixed_precision=no,fp16")
    rc, err = cli.run([*argv, "--json"])
    result = json.loads(cli.out)
    assert rc == 2 and err.splitlines()[-1].startswith("textcls: error: 2 of 4 sweep runs failed")
    out = tmp_path / "sweep"
    assert json.loads((out / "sweep.json").read_text()) == result and result["status"] == "done, with failed runs"
    assert result["grid"] == {"train.warmup_steps": [0, 3], "train.mixed_precision": ["no", "fp16"]}
    runs = {r["run"]: r for r in result["runs"]}
    assert list(runs) == ["warmup_steps=0,mixed_precision=no", "warmup_steps=0,mixed_precision=fp16",
                          "warmup_steps=3,mixed_precision=no", "warmup_steps=3,mixed_precision=fp16"]
    for name, run in runs.items():
        if name.endswith("fp16"):
            assert "fp16 needs a GPU" in run["error"]
            continue
        summary = json.loads((out / name / "summary.json").read_text())
        assert run["steps"] == summary["steps"] == 4 and (out / name / "model" / "model.safetensors").is_file()
        assert run["final"] == summary["final"]
        assert run["best_validation"] == summary["best_validation"]["accuracy"]
        assert run["settings"]["train.warmup_steps"] == json.loads((out / name / "config.json").read_text())[
            "train"]["warmup_steps"]

    # The warmup is what differs: the learning rate each step used, linear decay to 0 over the 4 steps after it.
    def rates(name):
        records = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
        return [r["lr"] for r in records if r["kind"] == "train"]
    assert rates("warmup_steps=0,mixed_precision=no") == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert rates("warmup_steps=3,mixed_precision=no") == pytest.approx([0, 1e-3 / 3, 2e-3 / 3, 1e-3])

    table = (out / "sweep.md").read_text()
    assert "| warmup_steps | mixed_precision | final val accuracy | best val accuracy | test accuracy | steps | " \
           "time |" in table
    ok = runs["warmup_steps=3,mixed_precision=no"]
    assert f"| 3 | no | {ok['final_validation']:.4f} | {ok['best_validation']:.4f} | " \
           f"{ok['final']['test']['accuracy']:.4f} | 4 |" in table
    assert "| 0 | fp16 | failed |" in table and "- warmup_steps=0,mixed_precision=fp16: " in table
    assert "](sweep.png)" in table
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    err = cli.error(*argv)  # the same command again
    assert "already holds a sweep" in err


def test_every_run_failing_is_an_error(small_imdb, tmp_path, cli):
    err = cli.error(*sweep_argv(small_imdb, tmp_path, "--set", "seed=1,2", "--mixed-precision", "fp16"))
    assert "every run of the sweep failed" in err and "fp16 needs a GPU" in err
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text())["status"] == "running"


def test_a_combination_that_cannot_work_stops_the_sweep_before_it_starts(small_imdb, tmp_path, cli):
    """bert-tiny has 512 positions: a max length of 600 is found out before the first run, not after it."""
    err = cli.error(*sweep_argv(small_imdb, tmp_path, "--set", "max_length=32,600"))
    assert "sweep run max_length=600: --max-length 600 exceeds the 512 positions" in err and \
        "no run was started" in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("spec,expected", [
    ("warmup_step=1,100", "did you mean 'train.warmup_steps' or"),
    ("train.max_length=64,128", "did you mean 'tokenize.max_length'"),
    ("warmup_steps=1,ten", "train.warmup_steps='ten': expected int"),
    ("learning_rate=1e-4,fast", "train.learning_rate='fast': expected float"),
    ("truncation=head,middle", "config value tokenize.truncation='middle' is not one of: head, tail, head+tail"),
    ("warmup_steps=1,100,1", "gives the value 1 twice"),
    ("output=a,b", "cannot vary train.output"),
    ("frobnicate=1,2", "unknown config key 'frobnicate': no section (data, tokenize, model, attention, train, "
                       "pretrain, distill) has it"),
    ("warmup_steps", "write KEY=V1,V2,..."),
    ("warmup_steps=", "write KEY=V1,V2,..."),
])
def test_bad_set(spec, expected, small_imdb, tmp_path, cli):
    assert expected in cli.error(*sweep_argv(small_imdb, tmp_path, "--set", spec))
    assert not (tmp_path / "sweep").exists()


def test_set_twice_and_used_output_folder(small_imdb, tmp_path, cli):
    err = cli.error(*sweep_argv(small_imdb, tmp_path, "--set", "warmup_steps=1,2", "--set", "warmup_steps=3"))
    assert "names train.warmup_steps twice" in err
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "notes.txt").write_text("mine")
    assert "is not an empty folder" in cli.error(*sweep_argv(small_imdb, tmp_path, "--set", "seed=1,2"))


def test_values_are_typed_and_run_folders_are_safe_names():
    grid = parse_sweep(["warmup_steps=1,100", "eval_splits=test+validation,test", "model=/m/a,bert-tiny",
                        "deterministic=true,false", "warmup_ratio=null,0.1"])
    assert grid == {"train.warmup_steps": [1, 100], "train.eval_splits": [["test", "validation"], ["test"]],
                    "model.model": ["/m/a", "bert-tiny"], "train.deterministic": [True, False],
                    "train.warmup_ratio": [None, 0.1]}
    assert run_names([{"model.model": "/m/a"}, {"model.model": "bert-tiny"}, {"model.model": "//m/a"}]) == [
        "model=-m-a", "model=bert-tiny", "model=-m-a-3"]
