"""`textcls train`: the run directory, the schedule, clipping, accumulation, evaluation, keep-best, early stopping,
mixed precision. Small real IMDB subsets on a tiny random BERT (the `train_argv` fixture of conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import accelerate
import pytest
import torch
from safetensors.torch import load_file

from textcls.cli import main
from textcls.config import ModelConfig, RunConfig, TrainConfig
from textcls.train.loop import Trainer, adamw


class Run(NamedTuple):
    out: Path                                # the run directory
    summary: dict                            # its summary.json
    records: list[dict]                      # its metrics.jsonl
    clips: list[tuple[float, float, float]]  # (max_norm, norm before, norm after) of every gradient clip

    def kind(self, kind: str) -> list[dict]:
        return [r for r in self.records if r["kind"] == kind]


@pytest.fixture(scope="module")
def two_epoch_run(train_argv, read_jsonl, tmp_path_factory) -> Run:
    """One run shared by the tests of what a run leaves behind: 2 epochs of 8 steps, the practice's
    num_warmup_steps=1, gradients clipped to 0.5 (every clip recorded), --save-total-limit 1."""
    clips = []
    # The spy sits on the Accelerator method the trainer calls: how accelerate clips inside it changes between
    # versions (1.16 no longer goes through torch.nn.utils.clip_grad_norm_).
    clip = accelerate.Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        before = clip(self, parameters, max_norm, *args, **kwargs)
        clips.append((max_norm, float(before), float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters if p.grad is not None])))))
        return before

    out = tmp_path_factory.mktemp("two-epochs") / "run"
    with pytest.MonkeyPatch.context() as mp:  # monkeypatch is function-scoped; this fixture is the module's
        mp.setattr(accelerate.Accelerator, "clip_grad_norm_", spy)
        assert main(train_argv(out, "--epochs", "2", "--warmup-steps", "1", "--learning-rate", "1e-3",
                               "--max-grad-norm", "0.5", "--logging-steps", "1", "--save-total-limit", "1")) == 0
    return Run(out, json.loads((out / "summary.json").read_text()), read_jsonl(out / "metrics.jsonl"), clips)


def test_summary_and_step_counts(two_epoch_run):
    summary = two_epoch_run.summary
    assert summary["steps"] == 16 and summary["epochs"] == 2
    assert summary["final"]["test"].keys() == {"loss", "accuracy", "macro_f1"}
    assert summary["metrics"]["test"]["examples"] == 32
    train = two_epoch_run.kind("train")
    assert [r["step"] for r in train] == list(range(1, 17))
    assert all(r["loss"] > 0 and r["examples_per_s"] > 0 and r["grad_norm"] > 0 for r in train)


def test_schedule_of_one_warmup_step(two_epoch_run):
    """transformers' linear schedule with num_warmup_steps=1 over 16 steps: step s uses peak * (17 - s) / 15, but
    the first step, still warming up, uses 0 (the practice's setting, reproduced)."""
    train = two_epoch_run.kind("train")
    assert [r["lr"] for r in train] == pytest.approx([0.0] + [1e-3 * (17 - s) / 15 for s in range(2, 17)])


def test_gradients_clipped_to_max_grad_norm_and_logged_unclipped(two_epoch_run):
    clips = two_epoch_run.clips
    assert len(clips) == 16 and all(max_norm == 0.5 for max_norm, _, _ in clips)
    assert all(after <= 0.5 + 1e-5 for _, _, after in clips)
    assert [r["grad_norm"] for r in two_epoch_run.kind("train")] == pytest.approx([before for _, before, _ in clips])


def test_an_evaluation_per_epoch_and_the_final_split(two_epoch_run):
    assert [(r["step"], r["epoch"]) for r in two_epoch_run.kind("eval")] == [(8, 1), (16, 2)]
    assert [r["split"] for r in two_epoch_run.kind("final")] == ["test"]


def test_save_total_limit_keeps_the_last_and_the_best_checkpoint(two_epoch_run):
    """--save-total-limit 1 keeps the last checkpoint, and the best one if that is another; the last one's trainer
    state is the end of the run."""
    out = two_epoch_run.out
    best = two_epoch_run.summary["best_validation"]["step"]
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == sorted({f"step-{16:07d}", f"step-{best:07d}"})
    state = json.loads((out / "checkpoints" / f"step-{16:07d}" / "trainer_state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (16, 2, 0)


def test_config_json_reloads_the_resolved_settings(two_epoch_run):
    saved = RunConfig.load(two_epoch_run.out / "config.json")
    assert saved.train.learning_rate == 1e-3 and saved.train.warmup_steps == 1 and saved.tokenize.max_length == 64


def test_plots(two_epoch_run):
    for name in ("loss", "lr", "eval"):
        assert (two_epoch_run.out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_loads_in_transformers(two_epoch_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hf = AutoModelForSequenceClassification.from_pretrained(two_epoch_run.out / "model")
    tok = AutoTokenizer.from_pretrained(two_epoch_run.out / "model")
    assert hf.config.num_labels == 2 and hf.config.hidden_size == 32
    assert hf(**tok(["a fine film"], return_tensors="pt")).logits.shape == (1, 2)


def test_adamw_decays_matrices_only(tiny_model):
    from textcls.model import build_classifier

    model, _ = build_classifier(ModelConfig(model=str(tiny_model), init="random"), ["neg", "pos"], max_length=64)
    opt = adamw(model, TrainConfig(weight_decay=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decayed | plain == set(names.values()) and not decayed & plain
    assert plain and all(n.endswith(".bias") or "ln." in n for n in plain)
    assert "encoder.embeddings.word.weight" in decayed and "classifier.weight" in decayed
    assert "encoder.blocks.0.attn_ln.weight" in plain and "encoder.embeddings.ln.weight" in plain


def test_accumulation_equals_one_larger_batch(train_argv, cli, read_jsonl, model_weights, tmp_path):
    """2 batches of 4 accumulated = 1 batch of 8: the same examples (no length grouping), the same mean loss."""
    common = ("--max-steps", "4", "--eval-strategy", "no", "--hidden-dropout", "0", "--no-group-by-length",
              "--logging-steps", "1", "--learning-rate", "1e-3")
    cli.ok(train_argv(tmp_path / "big", *common))
    argv = train_argv(tmp_path / "acc", *common, "--gradient-accumulation-steps", "2")
    argv[argv.index("--batch-size") + 1] = "4"
    cli.ok(argv)

    big, acc = (model_weights(tmp_path / name / "checkpoints" / f"step-{4:07d}") for name in ("big", "acc"))
    assert big.keys() == acc.keys()
    for name in big:
        torch.testing.assert_close(acc[name], big[name], rtol=1e-4, atol=2e-5, msg=name)
    losses = [[r["loss"] for r in read_jsonl(tmp_path / name / "metrics.jsonl") if r["kind"] == "train"]
              for name in ("big", "acc")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_compile_trains_as_eager(train_argv, cli, read_jsonl, model_weights, tmp_path, monkeypatch):
    """--compile compiles each encoder layer (the code that runs is the compiler's, batches of several lengths) and
    trains to the weights eager training reaches (no dropout: the compiler draws its own random masks), under the
    same parameter names: checkpoints and exports do not see it."""
    import textcls.train.loop

    compiled = []
    compile_layers = textcls.train.loop.compile_layers
    monkeypatch.setattr(textcls.train.loop, "compile_layers",
                        lambda model: (compile_layers(model), compiled.extend(model.encoder.blocks)))
    common = ("--max-steps", "3", "--eval-strategy", "no", "--hidden-dropout", "0", "--logging-steps", "1",
              "--learning-rate", "1e-3", "--eval-splits")
    cli.ok(train_argv(tmp_path / "eager", *common))
    from torch._dynamo.utils import counters

    counters.clear()
    cli.ok(train_argv(tmp_path / "compiled", *common, "--compile"))
    assert len(compiled) == 2 and counters["stats"]["unique_graphs"] >= 1  # compiled code ran

    eager, comp = (model_weights(tmp_path / name / "checkpoints" / f"step-{3:07d}") for name in ("eager", "compiled"))
    assert eager.keys() == comp.keys()
    for name in eager:
        torch.testing.assert_close(comp[name], eager[name], rtol=1e-4, atol=1e-5, msg=name)
    losses = [[r["loss"] for r in read_jsonl(tmp_path / name / "metrics.jsonl") if r["kind"] == "train"]
              for name in ("eager", "compiled")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_eval_steps_keep_best_and_early_stopping(train_argv, cli, read_jsonl, model_weights, tmp_path, monkeypatch):
    """Validation accuracy scripted as 0.5, 0.7, 0.6, 0.7: the best is step 2 (a tie is no improvement), patience 2
    stops at step 4, --save-total-limit 1 still keeps step 2, and the exported model holds step 2's weights."""
    scripted = iter([0.5, 0.7, 0.6, 0.7])
    evaluate = Trainer.evaluate

    def fake_validation(self, split):
        metrics = evaluate(self, split)
        return {**metrics, "accuracy": next(scripted)} if split == "validation" else metrics

    monkeypatch.setattr(Trainer, "evaluate", fake_validation)
    out = tmp_path / "run"
    summary = cli.ok(train_argv(out, "--max-steps", "10", "--eval-strategy", "steps", "--eval-steps", "1",
                                "--early-stopping-patience", "2", "--save-total-limit", "1", "--learning-rate", "1e-3"))
    assert summary["steps"] == 4
    assert summary["best_validation"] == {"accuracy": 0.7, "step": 2} and summary["weights"] == "best (step 2)"
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert [(r["step"], r["accuracy"], r["best"]) for r in evals] == [(1, 0.5, True), (2, 0.7, True),
                                                                      (3, 0.6, False), (4, 0.7, False)]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step-{2:07d}", f"step-{4:07d}"]

    from textcls.model import load_classifier
    exported = load_classifier(out / "model")[0].state_dict()
    best, last = (model_weights(out / "checkpoints" / f"step-{s:07d}") for s in (2, 4))
    assert all(torch.equal(exported[k], best[k]) for k in best)
    assert not all(torch.equal(best[k], last[k]) for k in best)


def test_bf16_autocast_on_cpu(train_argv, cli, read_jsonl, tmp_path, monkeypatch):
    import textcls.model

    monkeypatch.setenv("TEXTCLS_NATIVE_BF16", "1")  # emulated on other CPUs: slower, still right
    dtypes = set()
    build = textcls.model.build_classifier

    def build_and_watch(*args, **kwargs):
        model, report = build(*args, **kwargs)
        model.classifier.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype))
        return model, report

    monkeypatch.setattr(textcls.model, "build_classifier", build_and_watch)
    out = tmp_path / "run"
    cli.ok(train_argv(out, "--max-steps", "2", "--mixed-precision", "bf16", "--logging-steps", "1"))
    assert dtypes == {torch.bfloat16}  # training and evaluation ran under autocast
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in read_jsonl(out / "metrics.jsonl") if "loss" in r)
    assert load_file(str(out / "checkpoints" / f"step-{2:07d}" / "model.safetensors"))["classifier.weight"].dtype \
        == torch.float32  # the weights stay fp32


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused on CPU-only machines")
def test_fp16_needs_a_gpu(train_argv, cli, tmp_path):
    rc, err = cli.run(train_argv(tmp_path / "run", "--mixed-precision", "fp16"))
    assert rc == 2 and "--mixed-precision fp16 needs a GPU" in err
    assert not (tmp_path / "run").exists()


def test_tensorboard_without_the_package(train_argv, cli, tmp_path, monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "is_tensorboard_available", lambda: False)
    rc, err = cli.run(train_argv(tmp_path / "run", "--tensorboard"))
    assert rc == 2 and "--tensorboard needs the tensorboard package: pip install tensorboard" in err
    assert not (tmp_path / "run").exists()


def test_train_help_is_grouped_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: textcls train --data SPEC")
    groups = ["data options", "tokenize options", "model options", "schedule", "optimization",
              "evaluation and checkpoints", "run and logging"]
    assert [text.index(f"\n{g}") for g in groups] == sorted(text.index(f"\n{g}") for g in groups)
    for flag, default in [("--epochs N", "(default: 3)"), ("--learning-rate LR", "(default: 0.0001)"),
                          ("--group-by-length, --no-group-by-length", "(default: on)"),
                          ("--deterministic, --no-deterministic", "(default: off)")]:
        line = text[text.index(flag):]
        assert default in " ".join(line[:line.index("\n  --", 1)].split()), flag
    assert "examples:" in text and "--resume" in text
