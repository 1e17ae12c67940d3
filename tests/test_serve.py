"""`textcls serve`: the dynamic batcher on its own; the HTTP API on a real server on the loopback (answers equal
`textcls predict`, concurrent requests, every bad input a 4xx JSON error and the server alive after it); the
explanations (gradient x input, checked against a finite difference); and the command itself in a child process
(start line, SIGINT, port in use, missing extra)."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
import torch

from textcls.infer import load_trained, predict_probabilities, predict_texts
from textcls.serve.batcher import Batcher, BatcherClosed


# ------------------------------------------------------------------------------------------- the batcher alone

class Recorder:
    """A model function that records the batches it gets and answers each text with (text, its pair)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.pair_batches: list[bool] = []
        self.starts: list[float] = []  # when each call began
        self.delay, self.fail_on = delay, fail_on

    def __call__(self, texts, pairs):
        self.batches.append(list(texts))
        self.pair_batches.append(pairs is not None)
        self.starts.append(time.monotonic())
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot take {self.fail_on!r}")
        return [(t, p) for t, p in zip(texts, pairs or [None] * len(texts))]


def run_batcher(run, body, **kwargs):
    """`await body(batcher)` with a started batcher, stopped afterwards."""

    async def main():
        batcher = Batcher(run, **kwargs)
        batcher.start()
        try:
            return await body(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_requests_that_arrive_together_run_as_one_batch_and_each_gets_its_own_rows():
    run = Recorder()
    requests = [[f"r{i}t{j}" for j in range(i % 3 + 1)] for i in range(10)]  # 20 texts in 10 requests

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit(texts) for texts in requests))

    answers = run_batcher(run, body, max_batch=64, max_wait_ms=200)
    assert run.batches == [[t for texts in requests for t in texts]]  # one call, in arrival order
    assert [[t for t, _ in a] for a in answers] == requests


def test_batches_are_bounded_in_size_and_a_larger_request_runs_alone():
    run = Recorder()

    async def body(batcher):
        small = [batcher.submit([f"t{i}"]) for i in range(10)]
        large = batcher.submit([f"big{j}" for j in range(6)])
        return await asyncio.gather(*small, large)

    answers = run_batcher(run, body, max_batch=4, max_wait_ms=200)
    assert [len(b) for b in run.batches] == [4, 4, 2, 6]  # the request of 6 is never split
    assert sorted(t for b in run.batches for t in b) == sorted([f"t{i}" for i in range(10)] +
                                                               [f"big{j}" for j in range(6)])
    assert [[t for t, _ in a] for a in answers] == [[f"t{i}"] for i in range(10)] + [[f"big{j}" for j in range(6)]]


def test_a_batch_waits_at_most_max_wait_and_not_at_all_once_full():
    async def two_apart(batcher):
        first = asyncio.ensure_future(batcher.submit(["a"]))
        await asyncio.sleep(0.5)  # 10x the wait: the first batch has long run alone
        done_before = first.done()
        await batcher.submit(["b"])
        return done_before

    run = Recorder()
    assert run_batcher(run, two_apart, max_batch=64, max_wait_ms=50)
    assert run.batches == [["a"], ["b"]]

    async def full(batcher):  # a full batch runs at once, even with a wait of a minute
        start = time.monotonic()
        await asyncio.gather(batcher.submit(["a"]), batcher.submit(["b", "c"]))
        return time.monotonic() - start

    run = Recorder()
    assert run_batcher(run, full, max_batch=3, max_wait_ms=60_000) < 10
    assert run.batches == [["a", "b", "c"]]


def test_a_batch_closes_when_arrivals_pause_for_a_quarter_of_max_wait():
    """Requests 100 ms apart keep a batch open (max_wait 2 s: the pause that closes it is 500 ms); once they stop,
    the batch runs after that pause, not after the whole 2 s."""
    async def body(batcher):
        start = time.monotonic()
        waiting = []
        for text in "abc":
            waiting.append(asyncio.ensure_future(batcher.submit([text])))
            await asyncio.sleep(0.1)
        await asyncio.gather(*waiting)
        return start

    run = Recorder()
    start = run_batcher(run, body, max_batch=64, max_wait_ms=2000)
    assert run.batches == [["a", "b", "c"]]
    assert 0.6 <= run.starts[0] - start < 1.5  # c at 0.2 s + a 0.5 s pause; not 2 s (wide margins, a busy machine)


def test_the_wait_counts_from_the_first_requests_arrival():
    """A request that arrived during a model call longer than max_wait has waited enough: the next call starts as
    soon as that one ends, not max_wait later."""
    async def body(batcher):
        full = asyncio.gather(batcher.submit(["a"]), batcher.submit(["b"]))  # a full batch: runs at once, 2.5 s
        await asyncio.sleep(0.05)
        await batcher.submit(["c"])  # arrives during that call, its 2 s of wait over when the call ends
        await full

    run = Recorder(delay=2.5)
    run_batcher(run, body, max_batch=2, max_wait_ms=2000)
    assert run.batches == [["a", "b"], ["c"]]
    gap = run.starts[1] - run.starts[0] - 2.5  # from the end of the first call to the start of the second
    assert gap < 1.0  # not 2.0: wide margins, for a busy machine


def test_max_batch_1_runs_each_request_alone():
    run = Recorder()

    async def body(batcher):
        return await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(5)))

    answers = run_batcher(run, body, max_batch=1, max_wait_ms=100)
    assert run.batches == [[f"t{i}"] for i in range(5)]
    assert [a[0][0] for a in answers] == [f"t{i}" for i in range(5)]


def test_order_is_kept_under_random_arrival_and_pairs_never_share_a_batch_with_single_texts():
    run = Recorder(delay=0.01)
    rng = random.Random(0)
    requests = [([f"r{i}t{j}" for j in range(rng.randint(1, 4))], rng.random() < 0.3) for i in range(40)]

    async def one(batcher, texts, pair):
        await asyncio.sleep(rng.random() * 0.05)
        return await batcher.submit(texts, [t + "/pair" for t in texts] if pair else None)

    async def body(batcher):
        return await asyncio.gather(*(one(batcher, texts, pair) for texts, pair in requests))

    answers = run_batcher(run, body, max_batch=8, max_wait_ms=5)
    for (texts, pair), answer in zip(requests, answers):
        assert [list(row) for row in answer] == [[t, t + "/pair" if pair else None] for t in texts]
    assert len(run.batches) < len(requests)  # batching happened
    is_pair = {t: pair for texts, pair in requests for t in texts}
    for batch, pairs_given in zip(run.batches, run.pair_batches):
        assert len(batch) <= 8
        assert {is_pair[t] for t in batch} == {pairs_given}


def test_an_error_in_the_model_call_reaches_every_request_of_its_batch_and_the_worker_goes_on():
    run = Recorder(fail_on="boom")

    async def body(batcher):
        failed = await asyncio.gather(batcher.submit(["ok1"]), batcher.submit(["boom"]), return_exceptions=True)
        after = await batcher.submit(["ok2"])
        return failed, after

    failed, after = run_batcher(run, body, max_batch=8, max_wait_ms=100)
    assert run.batches[0] == ["ok1", "boom"]
    assert all(isinstance(e, ValueError) and "boom" in str(e) for e in failed)
    assert after == [("ok2", None)]


def test_stop_answers_waiting_requests_with_an_error():
    async def main():
        batcher = Batcher(Recorder(delay=0.3), max_batch=1, max_wait_ms=0)
        batcher.start()
        waiting = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(3)]
        await asyncio.sleep(0.1)  # the first one is running in its thread
        await batcher.stop()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        with pytest.raises(BatcherClosed):
            await batcher.submit(["late"])
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, BatcherClosed) for r in results)


# ------------------------------------------------------------------------------------------- a real server

LIMITS = dict(max_texts=8, max_text_chars=20_000, max_body_bytes=200_000)


@pytest.fixture(scope="module")
def reviews(small_imdb) -> list[str]:
    texts = pd.read_parquet(small_imdb / "test.parquet").text.tolist()
    random.Random(0).shuffle(texts)
    return texts[:24]


@pytest.fixture(scope="module")
def server(hf_classifier, serving):
    """A transformers folder (bert-tiny dims, weights that make predictions differ from text to text) served
    with small request limits."""
    from textcls.serve import Limits
    from textcls.serve.app import create_app

    app = create_app(load_trained(hf_classifier), max_batch=16, max_wait_ms=20, limits=Limits(**LIMITS))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def reference(hf_classifier, reviews) -> dict[str, dict]:
    """`textcls predict` (predict_texts) on the same texts: the answers the server must give."""
    return {r["text"]: r for r in predict_texts(hf_classifier, reviews)}


def same_prediction(got: dict, want: dict, atol: float = 1e-5) -> bool:
    return (got["label"] == want["label"] and got["probabilities"].keys() == want["probabilities"].keys()
            and all(abs(got["probabilities"][k] - p) <= atol for k, p in want["probabilities"].items()))


def test_health_and_info(server, hf_classifier):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/info").json()
    assert info["labels"] == ["LABEL_0", "LABEL_1"]
    assert info["model"] == str(hf_classifier.resolve())
    assert info["max_length"] == 512 and info["attention"] == {"name": "full", "options": {}}
    assert info["pair"] is None  # a transformers folder does not say what it was trained on
    assert info["max_batch"] == 16 and info["max_wait_ms"] == 20 and info["batch_size"] == 8
    assert info["limits"] == LIMITS
    assert info["explain_method"] == "gradient x input"


def test_predictions_equal_textcls_predict_in_input_order(server, reviews, reference):
    r = httpx.post(f"{server}/predict", json={"texts": reviews[:8]}, timeout=60)
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 8
    for got, text in zip(predictions, reviews[:8]):
        assert same_prediction(got, reference[text])
    probs = [p["probabilities"]["LABEL_0"] for p in predictions]
    assert max(probs) - min(probs) > 0.1  # they differ from text to text: a reordering would show


def test_concurrent_requests_are_batched_and_each_gets_its_own_answers(server, reviews, reference):
    rng = random.Random(1)
    requests = [rng.sample(reviews, rng.randint(1, 3)) for _ in range(24)]
    before = httpx.get(f"{server}/info").json()["batches"]

    async def main():
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            return await asyncio.gather(*(client.post("/predict", json={"texts": t}) for t in requests))

    responses = asyncio.run(main())
    for texts, r in zip(requests, responses):
        assert r.status_code == 200, r.text
        assert all(same_prediction(got, reference[t]) for got, t in zip(r.json()["predictions"], texts))
    batches = httpx.get(f"{server}/info").json()["batches"] - before
    assert 1 <= batches < len(requests)


def test_pairs_equal_textcls_predict(server, hf_classifier, reviews):
    texts, pairs = reviews[:3], ["A fine film.", "Terrible.", "Not bad at all, really."]
    want = predict_texts(hf_classifier, texts, pairs)
    got = httpx.post(f"{server}/predict", json={"texts": texts, "text_pairs": pairs}, timeout=60).json()
    assert all(same_prediction(g, w) for g, w in zip(got["predictions"], want))


BAD_REQUESTS = [
    # (what, body as JSON or raw bytes, status, part of the message)
    ("malformed JSON", b'{"texts": ["a"', 400, "not valid JSON"),
    ("not an object", [1, 2], 422, "JSON object"),
    ("no body", b"", 422, "JSON object"),
    ("texts missing", {}, 422, "texts"),
    ("texts not a list", {"texts": "a review"}, 422, "texts"),
    ("a text not a string", {"texts": ["ok", 3]}, 422, "texts.1"),
    ("a null text", {"texts": [None]}, 422, "texts.0"),
    ("empty list", {"texts": []}, 422, "at least 1"),
    ("blank text", {"texts": ["fine", " \t\n"]}, 422, "text 2 has nothing to read"),
    ("blank second text", {"texts": ["fine"], "text_pairs": [""]}, 422, "second text 1 has nothing to read"),
    ("unknown field", {"texts": ["a"], "labels": [1]}, 422, "unknown field 'labels'"),
    ("misspelt field", {"text": ["a"]}, 422, "unknown field 'text'"),
    ("pairs of another count", {"texts": ["a", "b"], "text_pairs": ["c"]}, 422, "2 texts but 1 text_pairs"),
    ("too many texts", {"texts": ["a"] * 9}, 413, "over the limit of 8"),
    ("text too long", {"texts": ["a" * 20_001]}, 422, "over the limit of 20000"),
    ("body too large", {"texts": ["word " * 50_000]}, 413, "over the limit of 200000 bytes"),
]


@pytest.mark.parametrize("what, body, status, message", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_each_bad_request_is_a_4xx_json_error_and_the_server_lives_on(server, what, body, status, message):
    kw = {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else \
        {"json": body}
    r = httpx.post(f"{server}/predict", timeout=60, **kw)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    ok = httpx.post(f"{server}/predict", json={"texts": ["still here"]}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def test_other_bad_requests(server):
    assert httpx.post(f"{server}/explain", json={"text": "a", "texts": ["b"]}).json()["error"] == \
        "unknown field 'texts'"
    r = httpx.post(f"{server}/explain", json={"text": "x" * 20_001})
    assert r.status_code == 422 and "20000" in r.json()["error"]
    r = httpx.post(f"{server}/predict", content=b'{"texts": ["a"]}', headers={"Content-Type": "text/plain"})
    assert 400 <= r.status_code < 500 and "error" in r.json()
    r = httpx.get(f"{server}/nowhere")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}
    assert httpx.get(f"{server}/predict").status_code == 405
    chunked = httpx.post(f"{server}/predict", content=iter([b'{"texts": ["', b"a" * 250_000, b'"]}']),
                         headers={"Content-Type": "application/json"})  # no Content-Length: counted as it comes
    assert chunked.status_code == 413
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}


# ------------------------------------------------------------------------------------------- explanations

def check_spans(text: str, words: list[dict]) -> None:
    """Spans in order, not overlapping, each the text it claims, and nothing but spaces between them."""
    at = 0
    for w in words:
        assert at <= w["start"] < w["end"] <= len(text)
        assert text[w["start"]:w["end"]] == w["text"]
        assert text[at:w["start"]].strip() == ""
        at = w["end"]
    assert text[at:].strip() == ""
    assert all(math.isfinite(w["score"]) for w in words)


def test_explain_spans_cover_the_text_and_agree_with_predict(server, reviews, reference):
    text = reviews[0]
    r = httpx.post(f"{server}/explain", json={"text": text}, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["method"] == "gradient x input"
    assert same_prediction(out, reference[text], atol=1e-4)
    assert {w["segment"] for w in out["words"]} == {0}
    check_spans(text, out["words"])
    assert sum(abs(w["score"]) > 0 for w in out["words"]) > len(out["words"]) / 2


def test_explain_a_pair(server):
    text, pair = "The plot was thin, the acting superb.", "Was the film good?"
    out = httpx.post(f"{server}/explain", json={"text": text, "text_pair": pair}, timeout=60).json()
    check_spans(text, [w for w in out["words"] if w["segment"] == 0])
    check_spans(pair, [w for w in out["words"] if w["segment"] == 1])
    assert [w["text"] for w in out["words"] if w["segment"] == 1] == ["Was", "the", "film", "good", "?"]


def test_scores_are_gradient_x_input_and_leave_no_gradients(hf_classifier, reviews):
    """In float64: scaling a word's embedding vectors by (1 + h) changes the predicted label's log-probability
    by h times its score, to first order (a central difference); the model's weights get no .grad."""
    from textcls.serve.explain import explain

    trained = load_trained(hf_classifier)
    trained.model.double()
    text = "An absolutely wonderful, moving film; the ending was weak."
    out = explain(trained, text)
    best = trained.label_names.index(out["label"])
    assert all(p.grad is None for p in trained.model.parameters())
    encoding = trained.encoder(False).backend.encode(text, add_special_tokens=False)

    def log_prob(scale: float, words: set[int]) -> float:
        # token positions of the chosen words: +1 for [CLS]
        rows = {i + 1 for i, w in enumerate(encoding.word_ids) if w in words}
        handle = trained.model.encoder.embeddings.word.register_forward_hook(
            lambda m, a, o: o * torch.tensor([scale if t in rows else 1.0 for t in range(o.shape[1])],
                                             dtype=o.dtype)[None, :, None])
        try:
            logits = trained.logits([text], batch_size=1).double()
        finally:
            handle.remove()
        return float(logits.log_softmax(-1)[0, best])

    h = 1e-4
    for words, want in (({2}, out["words"][2]["score"]), (set(range(len(out["words"]))),
                                                          sum(w["score"] for w in out["words"]))):
        slope = (log_prob(1 + h, words) - log_prob(1 - h, words)) / (2 * h)
        assert slope == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_explain_marks_the_words_truncation_cut_off(trained_run, reviews):
    """A textcls run trained at 64 tokens (truncation head): the words past them get no score, and the
    prediction is predict's."""
    from textcls.serve.explain import explain

    trained = load_trained(trained_run)
    text = max(reviews, key=len)
    out = explain(trained, text)
    check_spans(text, out["words"])
    seen = [w["seen"] for w in out["words"]]
    assert out["truncated"] and seen[0] and not seen[-1]
    assert seen == sorted(seen, reverse=True)  # head: a prefix is seen
    assert all(w["score"] == 0 for w in out["words"] if not w["seen"])
    want = predict_probabilities(trained, [text])[0].tolist()
    assert list(out["probabilities"].values()) == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("truncation", ["head", "tail", "head+tail", "chunks"])
def test_explain_follows_each_truncation(trained_run, reviews, truncation, pair):
    """At 32 tokens: the words the model sees are those the truncation keeps (chunks: all, over several windows
    averaged as predict averages them), and the prediction is predict's."""
    from textcls.config import TokenizeConfig
    from textcls.serve.explain import explain

    trained = load_trained(trained_run)
    trained.tokenize_cfg = TokenizeConfig(max_length=32, truncation=truncation, head_tokens=8, stride=4)
    text, second = reviews[1], (reviews[2] if pair else None)
    out = explain(trained, text, second)
    words = [w for w in out["words"] if w["segment"] == 0]
    check_spans(text, words)
    if pair:
        check_spans(second, [w for w in out["words"] if w["segment"] == 1])
    seen = "".join("1" if w["seen"] else "0" for w in words)
    # chunked pairs keep the first text's head (a question) and cut the second into windows (the document)
    pattern = {"head": r"1+0+", "tail": r"0+1+", "head+tail": r"1+0+1+",
               "chunks": r"1+0+" if pair else r"1+"}[truncation]
    assert re.fullmatch(pattern, seen), seen
    if pair and truncation == "chunks":
        assert all(w["seen"] for w in out["words"] if w["segment"] == 1)
    assert out["truncated"] == (not all(w["seen"] for w in out["words"]))
    assert out["truncated"] == (truncation != "chunks" or pair)
    want = predict_probabilities(trained, [text], None if second is None else [second])[0].tolist()
    assert list(out["probabilities"].values()) == pytest.approx(want, abs=1e-5)


# ------------------------------------------------------------------------------------------- the command

def start_cli(*argv: str) -> tuple[subprocess.Popen, str]:
    """`textcls serve ARGV` in a child process; waits for its start line, returns it with the URL."""
    proc = subprocess.Popen([sys.executable, "-m", "textcls", "serve", *argv], stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if match := re.search(r"on (http://127\.0\.0\.1:\d+)", line):
            return proc, match.group(1)
    proc.kill()
    raise AssertionError(f"no start line: {''.join(lines)}")


def test_the_command_serves_and_stops_cleanly_on_sigint(trained_run, reviews):
    proc, url = start_cli(str(trained_run), "--port", "0", "--max-batch", "4")
    try:
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        info = httpx.get(f"{url}/info").json()
        assert info["max_batch"] == 4 and info["max_length"] == 64 and info["labels"] == ["0", "1"]
        got = httpx.post(f"{url}/predict", json={"texts": reviews[:5]}, timeout=60).json()["predictions"]
        want = predict_texts(trained_run, reviews[:5])
        assert all(same_prediction(g, w) for g, w in zip(got, want))
        page = httpx.get(url)
        assert page.status_code == 200 and 'id="submit"' in page.text
        assert "://" not in page.text  # self-contained: nothing fetched from elsewhere
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        finally:
            proc.kill()
        err = proc.stderr.read()
    assert rc in (0, 130), err
    assert "Traceback" not in err, err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health")


def test_the_commands_flags_reach_the_app(trained_run, cli, monkeypatch):
    """Batching, limits, and predict's attention flags: the app that `textcls serve` would run says so in /info
    (uvicorn's run is replaced by a look at the app)."""
    import uvicorn
    from fastapi.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: apps.append(self.config.app))
    rc, err = cli.run(["serve", str(trained_run), "--port", "0", "--max-batch", "3", "--max-wait-ms", "7",
                       "--batch-size", "2", "--max-texts", "5", "--max-text-chars", "99", "--max-body-bytes",
                       "5000", "--attention", "sliding", "--sliding-window", "16", "--tokenizer", "minilm-l6"])
    assert rc == 0, err
    with TestClient(apps[0]) as client:
        info = client.get("/info").json()
        assert client.post("/predict", json={"texts": ["a fine film"] * 6}).status_code == 413
        assert client.post("/predict", json={"texts": ["a fine film"] * 5}).status_code == 200
    assert info["attention"] == {"name": "sliding", "options": {"sliding_window": 16, "sliding_global": "cls"}}
    assert (info["max_batch"], info["max_wait_ms"], info["batch_size"]) == (3, 7, 2)
    assert info["limits"] == {"max_texts": 5, "max_text_chars": 99, "max_body_bytes": 5000}


def test_a_port_in_use_is_one_error_line(trained_run, cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = cli.error("serve", str(trained_run), "--port", str(port))
    assert f"port {port} on 127.0.0.1 is in use" in line


@pytest.mark.parametrize("flags, message", [
    (["--max-batch", "0"], "--max-batch must be at least 1"),
    (["--max-wait-ms", "-1"], "--max-wait-ms must be at least 0"),
    (["--port", "70000"], "--port must be within [0, 65535], got 70000"),
    (["--port", "-1"], "--port must be within [0, 65535], got -1"),
    (["--max-texts", "0"], "--max-texts must be at least 1"),
])
def test_bad_flags(trained_run, cli, flags, message):
    assert message in cli.error("serve", str(trained_run), *flags)


def test_without_the_serve_extra_it_says_what_to_install(trained_run, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now raises ImportError
    line = cli.error("serve", str(trained_run))
    assert "pip install 'textcls[serve]'" in line and "uvicorn" in line


def test_help_stays_fast_and_light():
    """`textcls --help` imports neither torch nor the web stack."""
    code = "import sys; from textcls.cli import build_parser; build_parser(); " \
           "print(json.dumps(sorted(m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [], out.stderr
