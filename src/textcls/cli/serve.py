"""`textcls serve MODEL`: the model behind an HTTP JSON API and a web page (see textcls.serve)."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
from pathlib import Path

from textcls.config import add_arguments, add_section_arguments, attention_from_args, section_from_args
from textcls.errors import TextclsError
from textcls.serve import ServeConfig

log = logging.getLogger("textcls")

SERVE_EXAMPLES = """examples:
  textcls serve runs/imdb                          # http://127.0.0.1:8000: the page; POST /predict, /explain
  curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"texts": ["A fine film."]}'
  textcls serve runs/imdb --port 0                 # any free port (the start line says which)
  textcls serve runs/imdb --max-batch 1            # batching off: each request runs alone
"""


def register(sub) -> None:
    p = sub.add_parser("serve", help="an HTTP JSON API and a web page for a trained model",
                       description="Serve a trained classifier over HTTP:\n"
                                   "  POST /predict {\"texts\": [...], \"text_pairs\": [...]}  labels and probabilities\n"
                                   "  POST /explain {\"text\": ..., \"text_pair\": ...}  the same, with per-word scores "
                                   "(gradient x input)\n"
                                   "  GET /info, GET /health, and a web page at /\n"
                                   "Requests that arrive together are batched together (--max-batch, --max-wait-ms).\n"
                                   "Needs the serve extra: pip install 'textcls[serve]'.",
                       epilog=SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL", help="a run directory, its model/ folder, or a transformers BERT "
                                                      "classifier folder")
    add_section_arguments(p, ServeConfig)
    # The flags `textcls predict` takes to run a trained model, built from the same config fields: --tokenizer,
    # --attention and the mechanisms' options.
    add_arguments(p, "tokenize", only=("tokenizer",))
    add_arguments(p, "train", only=("mixed_precision",))
    add_arguments(p, "model", only=("attention",))
    add_arguments(p, "attention")
    p.set_defaults(func=_serve)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, not yet listening: a port in use is an error before the model is loaded, and
    clients are refused (not left waiting) until the server is ready."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise TextclsError(f"--host {host!r} is not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses a port left in TIME_WAIT
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise TextclsError(f"port {port} on {host} is in use (another server?); choose another --port, or "
                               f"--port 0 for any free one") from None
        raise TextclsError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from textcls.serve.app import create_app
    except ImportError as e:
        raise TextclsError(f"textcls serve needs FastAPI and uvicorn ({e.name} is not installed); "
                           f"pip install 'textcls[serve]'") from None
    from textcls.infer.model import load_trained

    cfg = section_from_args(ServeConfig, args)
    sock = bind(cfg.host, cfg.port)
    attention, overrides = attention_from_args(args)
    trained = load_trained(Path(args.model_dir), getattr(args, "tokenizer", None), attention=attention,
                           attention_overrides=overrides, precision=getattr(args, "mixed_precision", "auto"))
    app = create_app(trained, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, batch_size=cfg.batch_size,
                     limits=cfg.limits())
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            if not self.should_exit:  # listening now: the line scripts wait for
                log.info("textcls serve: %s on %s (batches of up to %d texts, %g ms wait; Ctrl-C stops)",
                         trained.folder, url, cfg.max_batch, cfg.max_wait_ms)

    # log_config=None: uvicorn's records go through textcls's logging; only its warnings, no access log.
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    # uvicorn handles SIGINT/SIGTERM: open requests finish, the lifespan stops the batcher, then it raises the
    # signal again, which is main()'s KeyboardInterrupt: "textcls: interrupted", exit status 130.
    Server(config).run(sockets=[sock])
    return 0
