"""Long documents: sliding-window attention in real models (MiniLM, fine-tuning, export, predict), its options on the
command line and in saved models, chunked documents (--truncation chunks), and their bad inputs.

Tolerances: 1e-5 absolute on logits in float32 (MiniLM: full vs sliding with a window that covers the input)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch

from textcls.config import ModelConfig, RunConfig, TokenizeConfig
from textcls.errors import TextclsError
from textcls.model.attention import attention_names


# ------------------------------------------------------------------------------------------- sliding in real models

@pytest.fixture(scope="module")
def long_reviews(imdb_dir) -> list[str]:
    """Four real IMDB test reviews longer than 512 wordpieces."""
    table = pq.read_table(imdb_dir / "test.parquet", columns=["text"]).slice(0, 400)
    texts = [t for t in table["text"].to_pylist() if len(t) > 3500]
    return texts[:4]


def test_minilm_with_a_covering_window_equals_full(minilm_path, long_reviews):
    """all-MiniLM-L6-v2 (pretrained) with --attention sliding --sliding-window 1024 gives the logits of full
    attention on 512-token IMDB reviews, within 1e-5."""
    from textcls.data.batching import Collator
    from textcls.data.tokenize import ExampleEncoder, load_tokenizer
    from textcls.model import attention_options, build_classifier

    tok = load_tokenizer("minilm-l6")
    cfg = TokenizeConfig(max_length=512)
    enc = ExampleEncoder(tok, cfg, pair=False)(long_reviews)
    rows = [{"input_ids": i, "token_type_ids": t} for i, t in zip(enc["input_ids"], enc["token_type_ids"])]
    batch = Collator.from_config(cfg, tok)(rows)
    batch["attention_mask"][3, 400:] = 0  # and one padded row
    assert batch["input_ids"].shape == (4, 512)
    logits = {}
    for name, options in (("full", None), ("sliding", {"sliding_window": 1024})):
        torch.manual_seed(0)  # the same fresh classifier head
        model, _ = build_classifier(ModelConfig(model="minilm-l6", attention=name), ["neg", "pos"], 512,
                                    attention=attention_options(name, options))
        with torch.no_grad():
            logits[name] = model.eval()(**batch).logits
    assert torch.allclose(logits["sliding"], logits["full"], atol=1e-5, rtol=0)


def test_minilm_with_a_short_window_differs_but_runs(minilm_path, long_reviews):
    """A window of 64 really is local: other logits than full attention, finite."""
    from textcls.data.tokenize import load_tokenizer
    from textcls.model import attention_options, build_classifier

    tok = load_tokenizer("minilm-l6")
    batch = tok(long_reviews[:2], truncation=True, max_length=512, padding=True, return_tensors="pt")
    out = {}
    for name, options in (("full", None), ("sliding", {"sliding_window": 64})):
        torch.manual_seed(0)
        model, _ = build_classifier(ModelConfig(model="minilm-l6", attention=name), ["neg", "pos"], 512,
                                    attention=attention_options(name, options))
        with torch.no_grad():
            out[name] = model.eval()(**batch).logits
    assert torch.isfinite(out["sliding"]).all() and not torch.allclose(out["sliding"], out["full"], atol=1e-3)


@pytest.fixture(scope="module")
def sliding_run(tmp_path_factory, imdb_dir):
    """A short fine-tuning with sliding attention (window 16, first-segment-free: [CLS] global) beyond the
    checkpoint's positions: bert-tiny dims, 160 tokens with --extend-positions on a 128-position tiny BERT."""
    from textcls.config import RunConfig
    from textcls.train.loop import train

    folder = tmp_path_factory.mktemp("sliding")
    cfg = RunConfig.from_dict({
        "data": {"data": str(imdb_dir), "max_train_samples": 64, "max_eval_samples": 32},
        "tokenize": {"tokenizer": "minilm-l6", "max_length": 160, "cache_dir": str(folder / "cache")},
        "model": {"model": "bert-tiny", "init": "random", "attention": "sliding", "extend_positions": True},
        "attention": {"sliding_window": 16},
        "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "no"}})
    summary = train(cfg, output=folder / "run")
    return folder / "run", summary


def test_sliding_options_are_saved_and_restored(sliding_run):
    run, _ = sliding_run
    saved = json.loads((run / "model" / "textcls.json").read_text())
    assert saved["attention"] == "sliding"
    assert saved["attention_options"] == {"sliding_window": 16, "sliding_global": "cls"}
    assert not saved["transformers_equivalent"] and "attention 'sliding'" in saved["differences"][0]
    cfg = RunConfig.load(run / "config.json")
    assert cfg.model.attention == "sliding" and cfg.attention.sliding_window == 16

    from textcls.model import load_classifier
    model, _, _ = load_classifier(run / "model")
    assert model.encoder.attention.name == "sliding" and model.encoder.attention.options.sliding_window == 16
    assert model.encoder.config.max_positions == 512  # bert-tiny's 512 cover the run's 160


def test_predict_gives_the_logits_of_training(sliding_run, imdb_dir):
    """The exported model, loaded by predict, computes what the trained model computed: the test split's
    logits of evaluate (training's own final evaluation) equal those of predict on the same texts."""
    from textcls.data.sources import load_data
    from textcls.infer import load_trained, predict_probabilities

    run, summary = sliding_run
    trained = load_trained(run)
    dsd = load_data(RunConfig.load(run / "config.json").data)
    texts = dsd["test"]["text"][:]
    probs = predict_probabilities(trained, texts, batch_size=5)
    labels = torch.tensor(dsd["test"]["label"][:])
    # training's final metrics on the same 32 test reviews
    loss = torch.nn.functional.nll_loss(probs.log(), labels).item()
    accuracy = (probs.argmax(-1) == labels).float().mean().item()
    assert accuracy == summary["final"]["test"]["accuracy"]
    assert loss == pytest.approx(summary["final"]["test"]["loss"], abs=1e-5)


def test_evaluate_and_predict_run_a_model_with_another_mechanism(trained_run, small_imdb, cli):
    """--attention and its options on evaluate and predict: a full-attention model run with a window that covers
    its inputs gives the same numbers; a short window other ones."""
    full = cli.json("evaluate", str(trained_run), "--data", str(small_imdb))
    covering = cli.json("evaluate", str(trained_run), "--data", str(small_imdb), "--attention", "sliding",
                        "--sliding-window", "128")
    assert covering["accuracy"] == full["accuracy"] and covering["loss"] == pytest.approx(full["loss"], abs=1e-5)
    rows = cli.json("predict", str(trained_run), "a fine film", "--attention", "sliding", "--sliding-window", "2")
    assert set(rows[0]["probabilities"]) == {"0", "1"}


# ------------------------------------------------------------------------------------------- chunked documents

def test_chunks_cover_every_wordpiece_and_short_texts_are_one_window(hf_tokenizer):
    from textcls.data.tokenize import ExampleEncoder, load_tokenizer

    tok = load_tokenizer("minilm-l6")
    text = " ".join(f"w{i}" for i in range(300))
    pieces = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    enc = ExampleEncoder(tok, TokenizeConfig(max_length=64, truncation="chunks", stride=16), pair=False)
    out = enc([text, "short one"])
    docs = out["doc_id"]
    windows = [ids[1:-1] for ids, d in zip(out["input_ids"], docs) if d == 0]
    assert docs.count(1) == 1 and all(len(ids) <= 64 for ids in out["input_ids"])
    covered = set()
    for i, w in enumerate(windows):
        start = i * (62 - 16)
        assert w == pieces[start:start + 62]  # in order, each window 62 wordpieces on from the one before less 16
        covered |= set(range(start, start + len(w)))
    assert covered == set(range(len(pieces))) and len(windows) > 1
    assert windows[-1][-1] == pieces[-1]


def test_chunked_pairs_keep_the_first_text_and_cut_the_second(hf_tokenizer):
    from textcls.data.tokenize import ExampleEncoder, load_tokenizer

    tok = load_tokenizer("minilm-l6")
    question, context = "what is the answer", " ".join(f"c{i}" for i in range(80))
    out = ExampleEncoder(tok, TokenizeConfig(max_length=32, truncation="chunks", stride=4), pair=True)([question],
                                                                                                        [context])
    q = hf_tokenizer(question, add_special_tokens=False)["input_ids"]
    assert len(out["input_ids"]) > 1
    for ids, types in zip(out["input_ids"], out["token_type_ids"]):
        assert ids[1:1 + len(q)] == q and types.count(0) == len(q) + 2 and len(ids) <= 32


@pytest.fixture(scope="module")
def chunks_run(tmp_path_factory, small_imdb):
    from textcls.train.loop import train

    folder = tmp_path_factory.mktemp("chunks")
    cfg = RunConfig.from_dict({
        "data": {"data": str(small_imdb)},
        "tokenize": {"tokenizer": "minilm-l6", "max_length": 64, "truncation": "chunks", "stride": 16,
                     "cache_dir": str(folder / "cache")},
        "model": {"model": "bert-tiny", "init": "random"},
        "train": {"max_steps": 3, "batch_size": 8, "learning_rate": 1e-3}})
    return folder, train(cfg, output=folder / "run")


def test_chunked_training_counts_documents(chunks_run, small_imdb):
    """Windows train with their document's label; evaluation counts documents (60 test reviews), not windows."""
    folder, summary = chunks_run
    assert summary["metrics"]["test"]["examples"] == 60
    from datasets import Dataset
    (manifest,) = (folder / "cache" / "tokenized").glob("test-*.json")
    files = json.loads(manifest.read_text())["files"]
    windows = Dataset.from_file(str(manifest.parent / files[0]))
    assert len(windows) > 60 and sorted(set(windows["doc_id"])) == list(range(60))
    assert all(len(ids) <= 64 for ids in windows["input_ids"])


def test_chunked_predict_is_per_document_in_input_order(chunks_run, cli, imdb_rows):
    """predict averages each text's windows: one row per text, in input order, the same as each text alone."""
    folder, _ = chunks_run
    texts = [imdb_rows.text[5], "Short and sweet.", imdb_rows.text[30]]
    rows = cli.json("predict", str(folder / "run"), *texts)
    assert [r["text"] for r in rows] == texts
    alone = [cli.json("predict", str(folder / "run"), t)[0]["probabilities"] for t in texts]
    for r, a in zip(rows, alone):
        assert r["probabilities"] == pytest.approx(a, abs=1e-6)


def test_chunked_evaluate_equals_the_runs_final_metrics(chunks_run, small_imdb, cli):
    folder, summary = chunks_run
    result = cli.json("evaluate", str(folder / "run"), "--data", str(small_imdb))
    assert result["examples"] == 60 and result["accuracy"] == summary["final"]["test"]["accuracy"]
    assert result["loss"] == pytest.approx(summary["final"]["test"]["loss"], abs=1e-5)


def test_mean_by_document():
    from textcls.infer import mean_by_document

    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 4.0]])
    assert torch.equal(mean_by_document(logits, torch.tensor([0, 0, 1, 0])),
                       torch.tensor([[4 / 3, 2.0], [5.0, 5.0]]))


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("flags, message", [
    (["--sliding-size", "8"], "textcls: error: unrecognized arguments: --sliding-size 8 (see `textcls --help`)"),
    (["--sliding-window", "64"], "--sliding-window (attention.sliding_window) is an option of attention 'sliding', "
                                 "but the attention is 'full'; add --attention sliding"),
    (["--attention", "sliding", "--sliding-window", "7"], "--sliding-window 7 must be even"),
    (["--attention", "sliding", "--sliding-window", "0"], "--sliding-window must be at least 2, got 0"),
    (["--attention", "sliding", "--sliding-global", "first-segment"],
     "--sliding-global first-segment makes the first text of a pair global, but the data has single texts"),
    (["--truncation", "chunks", "--stride", "64"], "--stride 64 must be below --max-length 64"),
    (["--truncation", "chunks", "--stride", "63"], "--stride 63 does not fit: with --max-length 64 a window of a "
                                                   "text holds 62 wordpieces"),
    (["--attention", "nosuch"], "unknown attention 'nosuch'; registered mechanisms: bigbird, full, linformer, lsh, "
                                "sliding"),
])
def test_bad_long_document_settings(flags, message, train_argv, cli, tmp_path, capsys):
    from textcls.cli import main

    argv = train_argv(tmp_path / "run", *flags)
    if message.startswith("textcls: error: unrecognized"):  # argparse finds a flag that no mechanism has
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and capsys.readouterr().err == message + "\n"
        return
    assert message in cli.error(*argv)
    assert not (tmp_path / "run").exists()


def test_an_option_of_another_mechanism_in_a_config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  attention: full\nattention:\n  sliding_window: 128\n")
    with pytest.raises(TextclsError, match="is an option of attention 'sliding', but the attention is 'full'"):
        RunConfig.load(path)
    path.write_text("attention:\n  window: 128\n")
    with pytest.raises(TextclsError, match="unknown config key 'attention.window'"):
        RunConfig.load(path)


@pytest.mark.parametrize("name", attention_names())
def test_minilm_runs_with_every_mechanism_after_extend_positions(name, minilm_path, long_reviews):
    """all-MiniLM-L6-v2 (pretrained) with each mechanism and --extend-positions to 768 positions: the positions are
    extended, and two real reviews of 768 tokens (one padded after 600) give finite logits, the padded one what it
    gives alone (1e-4: the same arithmetic on another batch shape)."""
    from textcls.data.tokenize import load_tokenizer
    from textcls.model import build_classifier

    tok = load_tokenizer("minilm-l6")
    batch = tok(long_reviews[:2], truncation=True, max_length=768, padding="max_length", return_tensors="pt")
    batch["attention_mask"][1, 600:] = 0
    torch.manual_seed(0)
    model, report = build_classifier(ModelConfig(model="minilm-l6", attention=name, extend_positions=True),
                                     ["neg", "pos"], 768)
    assert report.extended_positions == (512, 768)
    with torch.no_grad():
        logits = model.eval()(**batch).logits  # (2, 2)
        alone = model(**{k: v[1:, :600] for k, v in batch.items()}).logits  # (1, 2)
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits[1:], alone, atol=1e-4, rtol=0)
