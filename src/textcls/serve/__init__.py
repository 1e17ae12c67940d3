"""`textcls serve`: a trained classifier behind an HTTP JSON API (FastAPI + uvicorn, the `serve` extra), with
dynamic batching of concurrent requests and a web page that shows the prediction and which words pushed it.

- batcher.py: the dynamic batcher (asyncio, framework-free)
- app.py: `create_app(trained, ...)`, the FastAPI app: /predict, /explain, /info, /health and the page
- explain.py: per-word attributions (gradient x input on the word embeddings)
- page.html: the page, self-contained (inline CSS and JS)

Nothing heavy is imported here: `textcls.serve.app` needs the `serve` extra, the rest needs only textcls.
"""

import dataclasses
from typing import ClassVar

from textcls.config import Section, opt

# Texts per forward pass within one model call (--batch-size): a call's texts are sorted by length and forwarded this
# many at a time, each forward padded to its longest text. Not all of a batch in one forward: with IMDB reviews of
# random lengths on a 2-core CPU, one padded forward of 16 took 1.3-1.8x the time per text of forwards of 8 or 4
# (the padding, and attention's cost in the padded length). A GPU may prefer more: raise --batch-size there.
FORWARD_BATCH = 8


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may hold (the flags of the same names); beyond it, a 413 or 422 that names the limit."""
    max_texts: int = 256  # texts per /predict request (413)
    max_text_chars: int = 100_000  # characters per text or second text (422)
    max_body_bytes: int = 1_000_000  # request body (413)


@dataclasses.dataclass
class ServeConfig(Section):
    """`textcls serve`'s own settings (flags of the same names), with their bounds."""
    section: ClassVar[str] = "serve"
    host: str = opt("127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                                 "network)", metavar="ADDRESS")
    port: int = opt(8000, "port (0: any free port)", metavar="N", ge=0, le=65535)
    max_batch: int = opt(64, "most texts of waiting requests run in one model call (a larger request runs alone, "
                             "whole); 1: batching off, each request alone", metavar="N", ge=1)
    max_wait_ms: float = opt(10.0, "how long a batch waits for more requests after its first one", metavar="X", ge=0)
    batch_size: int = opt(FORWARD_BATCH, "texts per forward pass within a model call, sorted by length as in "
                                         "`textcls predict`", metavar="N", ge=1)
    max_texts: int = opt(Limits.max_texts, "texts per request", metavar="N", ge=1)
    max_text_chars: int = opt(Limits.max_text_chars, "characters per text", metavar="N", ge=1)
    max_body_bytes: int = opt(Limits.max_body_bytes, "bytes per request body", metavar="N", ge=1)

    def limits(self) -> Limits:
        return Limits(max_texts=self.max_texts, max_text_chars=self.max_text_chars, max_body_bytes=self.max_body_bytes)
