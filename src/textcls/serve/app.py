"""The HTTP API of `textcls serve`: a FastAPI app over one TrainedModel.

    POST /predict  {"texts": [...], "text_pairs": [...]?}  -> {"predictions": [{"label", "probabilities"}, ...]}
    POST /explain  {"text": ..., "text_pair": ...?, "label": ...?}
                   -> the prediction + per-word scores (gradient x input) for a label (default: the predicted one)
    GET  /info     labels, max length, attention, batching and request limits
    GET  /health   {"status": "ok"}
    GET  /         the web page (page.html)

/predict goes through the dynamic batcher (batcher.py). Every model call, batched predictions and explanations
alike, runs in one dedicated thread: one at a time, so that the event loop stays free and explain's forward hook
never sees another request's forward. Every error is JSON, {"error": "..."}, with a 4xx status for anything the
client sent (a 500 is a bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from textcls.data.sources import is_blank
from textcls.errors import TextclsError
from textcls.infer.model import TrainedModel
from textcls.infer.predict import prediction_rows
from textcls.serve import FORWARD_BATCH, Limits
from textcls.serve.batcher import Batcher, BatcherClosed
from textcls.serve.explain import METHOD, TARGETS, explain

log = logging.getLogger("textcls")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] = Field(min_length=1)
    text_pairs: Optional[list[str]] = None


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str
    text_pair: Optional[str] = None
    label: Optional[str] = None  # the label to explain (a classifier's); None: the predicted / most probable one


def pair_mode(trained: TrainedModel) -> Optional[bool]:
    """True: the model takes pairs only, False: single texts only, None: either (what it was trained on is not
    saved; only an attention option that needs pairs, or cannot take them, tells)."""
    works = []
    for pairs in (False, True):
        try:
            trained.check_data(pairs)
            works.append(pairs)
        except TextclsError:
            pass
    return works[0] if len(works) == 1 else None


def model_info(trained: TrainedModel, pair: Optional[bool]) -> dict:
    attention = trained.model.encoder.attention
    cfg = trained.tokenize_cfg
    problem = {} if trained.problem_type == "single-label" else {"problem_type": trained.problem_type}
    return {"model": str(trained.folder.resolve()), "labels": trained.label_names, **problem,
            "max_length": cfg.max_length, "truncation": cfg.truncation,
            "attention": {"name": attention.name, "options": dataclasses.asdict(attention.options)},
            "pair": pair, "explain_method": METHOD,
            "explain_target": TARGETS[trained.problem_type]}


class BodyLimit:
    """ASGI middleware: reads a request's body up front, and answers 413 as soon as it is over `max_bytes`
    (the Content-Length says so, or the bytes received do), before anything parses it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": f"the request body is over the limit of {self.max_bytes} bytes "
                                    f"(--max-body-bytes); send fewer or shorter texts per request"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> str:
    """pydantic's complaints, with where each is in the body: `texts.2: Input should be a valid string`."""
    out = []
    for e in exc.errors()[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        if e.get("type") == "json_invalid":
            return f"the body is not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))})"
        if not where and e.get("type") in ("missing", "model_attributes_type", "dict_type", "model_type"):
            return 'the body must be a JSON object (Content-Type: application/json), e.g. {"texts": ["..."]}'
        if e.get("type") == "extra_forbidden":
            out.append(f"unknown field {where!r}")
        else:
            out.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(out)


def create_app(trained: TrainedModel, max_batch: int = 64, max_wait_ms: float = 10.0,
               batch_size: int = FORWARD_BATCH, limits: Limits = Limits()) -> FastAPI:
    """The app; its batcher and model thread start with the app's lifespan (uvicorn's startup) and stop with it.
    `max_batch`: most texts in one model call (1: each request alone); `batch_size`: texts per forward pass in it."""
    pair = pair_mode(trained)
    labels = trained.label_names

    def run(texts: list[str], pairs: Optional[list[str]]):
        # (N, num_labels) probabilities in input order: one TrainedModel.logits call, which sorts the texts by
        # length and forwards them batch_size at a time, as `textcls predict` does
        # (multi-label: each label's own probability; regression: the predicted value)
        return trained.scores(trained.logits(texts, pairs, batch_size=batch_size))

    batcher = Batcher(run, max_batch=max_batch, max_wait_ms=max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # the one thread every model call runs in, batched predictions and explanations alike
        batcher.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textcls-model")
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="textcls", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.state.batcher = batcher
    info = model_info(trained, pair) | {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "batch_size": batch_size,
                                  "limits": dataclasses.asdict(limits)}

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        status = 400 if exc.errors() and exc.errors()[0].get("type") == "json_invalid" else 422
        return JSONResponse({"error": _validation_message(exc)}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("textcls serve: %s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    def check_texts(texts: list[str], pairs: Optional[list[str]]) -> None:
        """Everything about the texts that would fail in the model, as a 4xx before they get there."""
        if len(texts) > limits.max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request, over the limit of {limits.max_texts} "
                                     f"(--max-texts); split them over several requests")
        if pairs is not None and len(pairs) != len(texts):
            raise HTTPException(422, f"{len(texts)} texts but {len(pairs)} text_pairs; give one second text per "
                                     f"text")
        if pair is False and pairs is not None:
            raise HTTPException(422, "this model takes single texts; leave out the second texts")
        if pair is True and pairs is None:
            raise HTTPException(422, "this model takes pairs of texts; give a second text for each text")
        for name, values in (("text", texts), ("second text", pairs or [])):
            for i, text in enumerate(values):
                if len(text) > limits.max_text_chars:
                    raise HTTPException(422, f"{name} {i + 1} has {len(text)} characters, over the limit of "
                                             f"{limits.max_text_chars} (--max-text-chars)")
                if is_blank(text):
                    raise HTTPException(422, f"{name} {i + 1} has nothing to read (it is empty, or only spaces and "
                                             f"invisible characters)")

    async def answer(coro):
        """A model call's result; TextclsError (the model cannot take these texts) is the client's 422."""
        try:
            return await coro
        except TextclsError as e:
            raise HTTPException(422, str(e)) from None
        except BatcherClosed as e:
            raise HTTPException(503, str(e)) from None

    @app.post("/predict")
    async def predict(body: PredictRequest):
        check_texts(body.texts, body.text_pairs)
        probs = await answer(batcher.submit(body.texts, body.text_pairs))  # (n, num_labels)
        rows = prediction_rows(body.texts, body.text_pairs, probs, labels, trained.problem_type, trained.thresholds)
        # single-label: label and probabilities; multi-label: labels above their thresholds {label: p} and
        # probabilities; regression: score
        return {"predictions": [{k: v for k, v in r.items() if k not in ("text", "text_pair")} for r in rows]}

    @app.post("/explain")
    async def explain_one(body: ExplainRequest):
        check_texts([body.text], None if body.text_pair is None else [body.text_pair])
        loop = asyncio.get_running_loop()
        return await answer(loop.run_in_executor(batcher.executor, explain, trained, body.text, body.text_pair,
                                                 body.label))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def get_info():
        return info | {"batches": batcher.batches, "texts_predicted": batcher.texts,
                       "model_seconds": round(batcher.busy_seconds, 3)}

    page = resources.files("textcls.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    return app
