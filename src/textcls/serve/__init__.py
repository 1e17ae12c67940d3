"""`textcls serve`: a trained classifier behind an HTTP JSON API (FastAPI + uvicorn, the `serve` extra), with
dynamic batching of concurrent requests and a web page that shows the prediction and which words pushed it.

- batcher.py: the dynamic batcher (asyncio, framework-free)
- app.py: `create_app(trained, ...)`, the FastAPI app: /predict, /explain, /info, /health and the page
- explain.py: per-word attributions (gradient x input on the word embeddings)
- page.html: the page, self-contained (inline CSS and JS)

Nothing heavy is imported here: `textcls.serve.app` needs the `serve` extra, the rest needs only textcls.
"""

import dataclasses

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
