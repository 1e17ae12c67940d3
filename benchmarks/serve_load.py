"""`textcls serve` under load: dynamic batching on (the defaults) against off (`--max-batch 1`).

    python benchmarks/serve_load.py MODEL [--data PATH] [--clients 16] [--requests 2000] [--max-chars N]
                                          [--client httpx|aiohttp] [--output DIR]

Starts `textcls serve MODEL` twice as a child process on a free loopback port (127.0.0.1 only), once with the
default batching and once with `--max-batch 1`, and sends each the same --requests single-review POST /predict
requests from --clients concurrent clients (asyncio + httpx, or aiohttp with --client aiohttp; each client sends its
next request as soon as its last one is answered). The reviews are a seeded sample of the test split of --data
(test.parquet, column `text`), whole or cut to their first --max-chars characters (short texts: where a model call's
fixed cost dominates). Reports throughput (requests/s), p50/p99 latency, the batches the server formed, the share of
the time the model was busy (from the server's /info), and the ratio of the two throughputs; checks that every
request was answered with 200 and that every answer equals `textcls predict` (predict_texts) on the same review
(same label, probabilities within 1e-4; in bf16, which both run where the CPU computes it natively, within 1e-2,
and a label may differ only where the reference's two top probabilities are closer than that: bf16's rounding
depends on the batch a text is padded in). Bounded: a fixed number of requests, and a run that takes longer than
--time-limit seconds is stopped and reported as failed. Writes a markdown table and the JSON (--output DIR:
serve_load.md, serve_load.json). Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imdb"
MODES = (("batching on (defaults)", []), ("batching off (--max-batch 1)", ["--max-batch", "1"]))
ATOL = {"no": 1e-4, "bf16": 1e-2}  # probabilities, by the precision `--mixed-precision auto` resolves to


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", metavar="MODEL", help="a run directory or classifier folder, as `textcls serve` takes")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding test.parquet (default: %(default)s)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    p.add_argument("--requests", type=int, default=2000, help="requests per server, one review each (default: 2000)")
    p.add_argument("--client", choices=["httpx", "aiohttp"], default="httpx",
                   help="the clients' HTTP library (default: httpx; aiohttp spends less of the shared CPU per request)")
    p.add_argument("--max-chars", type=int, help="cut each review to its first N characters (default: whole)")
    p.add_argument("--time-limit", type=float, default=600, help="seconds a server's run may take (default: 600)")
    p.add_argument("--output", metavar="DIR", help="write serve_load.md and serve_load.json here")
    return p.parse_args(argv)


class ServeProcess:
    """`textcls serve MODEL --port 0 FLAGS` in a child process: its URL from the start line, its stderr kept."""

    def __init__(self, model: str, flags: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "textcls", "serve", model, "--port", "0", *flags],
                                     stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            self.stderr.append(line)
            if match := re.search(r" on (http://127\.0\.0\.1:\d+)", line):
                self.url = match.group(1)
                # the rest of stderr is read as it comes, so that the server never blocks on a full pipe
                threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
                return
        self.proc.kill()
        raise SystemExit(f"textcls serve did not start:\n{''.join(self.stderr)}")

    def stop(self) -> dict:
        """SIGINT, as Ctrl-C: the exit status and whether stderr shows a traceback."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        time.sleep(0.2)  # the reader thread takes the last lines
        return {"exit_status": rc, "traceback": any("Traceback" in line for line in self.stderr)}


@contextlib.asynccontextmanager
async def http_client(kind: str, url: str, connections: int):
    """`request(method, path, body=None) -> (status, answer)` over `connections` keep-alive connections to `url`,
    with httpx or aiohttp. The clients share the machine's cores with the server: a lighter client leaves the server
    more of them (aiohttp spends less CPU per request than httpx)."""
    if kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            async def request(method: str, path: str, body=None):
                r = await http.request(method, path, json=body)
                return r.status_code, (r.json() if r.status_code == 200 else r.text)
            yield request
    else:
        try:
            import aiohttp
        except ImportError:
            raise SystemExit("--client aiohttp needs aiohttp: pip install aiohttp") from None
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
            async def request(method: str, path: str, body=None):
                async with http.request(method, path, json=body) as r:
                    return r.status, (await r.json() if r.status == 200 else await r.text())
            yield request


async def load(url: str, texts: list[str], clients: int, time_limit: float, kind: str = "httpx") -> dict:
    """Send texts[i] to /predict once each from `clients` concurrent clients; answers and latencies by index."""
    answers: list = [None] * len(texts)
    statuses: list = [None] * len(texts)
    latencies: list = [None] * len(texts)
    next_index = iter(range(len(texts)))

    async def client(request):
        for i in next_index:  # one shared iterator: each request is sent once, by whichever client is free
            start = time.perf_counter()
            statuses[i], answer = await request("POST", "/predict", {"texts": [texts[i]]})
            latencies[i] = time.perf_counter() - start
            answers[i] = answer["predictions"][0] if statuses[i] == 200 else answer

    async with http_client(kind, url, clients) as request:
        # warm-up (not timed): the server's first requests pay for lazy set-up
        await asyncio.gather(*(request("POST", "/predict", {"texts": [t]}) for t in texts[:clients]))
        before = (await request("GET", "/info"))[1]
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(request) for _ in range(clients))), time_limit)
        seconds = time.perf_counter() - start
        after = (await request("GET", "/info"))[1]
    return {"answers": answers, "statuses": statuses, "latencies": latencies, "seconds": seconds,
            "batches": after["batches"] - before["batches"], "texts": after["texts_predicted"] - before["texts_predicted"],
            "model_seconds": after["model_seconds"] - before["model_seconds"], "max_batch": after["max_batch"],
            "max_wait_ms": after["max_wait_ms"], "batch_size": after["batch_size"]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def agrees(answer: dict, want: dict, atol: float) -> bool:
    """The server's answer is predict's: probabilities within atol, the same label unless predict's two top
    probabilities are within atol of each other (a tie that rounding may break either way)."""
    top = sorted(want["probabilities"].values(), reverse=True)
    close = all(abs(answer["probabilities"][k] - p) <= atol for k, p in want["probabilities"].items())
    return close and (answer["label"] == want["label"] or top[0] - top[1] <= atol)


def run_mode(name: str, flags: list[str], args, texts: list[str], reference: list[dict]) -> dict:
    server = ServeProcess(args.model, flags)
    try:
        result = asyncio.run(load(server.url, texts, args.clients, args.time_limit, args.client))
    except asyncio.TimeoutError:
        raise SystemExit(f"{name}: not done within --time-limit {args.time_limit} s")
    finally:
        stopped = server.stop() if server.proc.poll() is None else {"exit_status": server.proc.returncode,
                                                                     "traceback": False}
    ok = [s == 200 for s in result["statuses"]]
    equal = [o and agrees(a, want, args.atol) for o, a, want in zip(ok, result["answers"], reference)]
    latencies_ms = [1000 * s for s in result["latencies"]]
    return {"mode": name, "flags": " ".join(flags) or "(defaults)", "max_batch": result["max_batch"],
            "max_wait_ms": result["max_wait_ms"], "requests": len(texts), "answered_200": sum(ok),
            "equal_to_predict": sum(equal), "seconds": result["seconds"],
            "requests_per_s": len(texts) / result["seconds"], "p50_ms": percentile(latencies_ms, 0.50),
            "p99_ms": percentile(latencies_ms, 0.99), "batches": result["batches"],
            "mean_texts_per_batch": result["texts"] / max(result["batches"], 1),
            "model_busy": result["model_seconds"] / result["seconds"], "batch_size": result["batch_size"], **stopped}


def markdown(rows: list[dict], ratio: float, args, command: str) -> str:
    lines = ["| server | requests | answered 200 | equal to `textcls predict` | requests/s | p50 latency (ms) | "
             "p99 latency (ms) | model calls | texts per call (mean) | model busy |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['requests']} | {r['answered_200']} | {r['equal_to_predict']} | "
                     f"{r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['batches']} | "
                     f"{r['mean_texts_per_batch']:.1f} | {100 * r['model_busy']:.0f}% |")
    texts = f"reviews cut to {args.max_chars} characters" if args.max_chars else "whole reviews"
    lines += ["", f"Throughput, batching on / off: **{ratio:.2f}x** ({args.clients} concurrent {args.client} "
                  f"clients, one review per request, {texts}; max batch {rows[0]['max_batch']}, max wait "
                  f"{rows[0]['max_wait_ms']:g} ms, "
                  f"forward batches of {rows[0]['batch_size']}).", "",
              f"`{command}` on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from textcls.device import resolve_mixed_precision
    from textcls.infer import predict_texts

    df = pd.read_parquet(Path(args.data) / "test.parquet", columns=["text"])
    texts = df.text.sample(args.requests, random_state=0, replace=args.requests > len(df)).tolist()
    if args.max_chars:
        texts = [t[:args.max_chars] for t in texts]
    print(f"reference: textcls predict on {len(texts)} reviews", file=sys.stderr)
    reference = predict_texts(Path(args.model), texts)
    args.atol = ATOL[resolve_mixed_precision("auto")]
    print(f"precision: {resolve_mixed_precision('auto')} (probabilities compared within {args.atol})", file=sys.stderr)
    rows = []
    for name, flags in MODES:
        print(f"{name}: {args.requests} requests from {args.clients} clients", file=sys.stderr)
        rows.append(run_mode(name, flags, args, texts, reference))
        print(f"  {rows[-1]['requests_per_s']:.1f} requests/s, p50 {rows[-1]['p50_ms']:.1f} ms, p99 "
              f"{rows[-1]['p99_ms']:.1f} ms", file=sys.stderr)
    ratio = rows[0]["requests_per_s"] / rows[1]["requests_per_s"]
    command = shlex.join(["python", "benchmarks/serve_load.py", *(sys.argv[1:] if argv is None else argv)])
    table = markdown(rows, ratio, args, command)
    print(table)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_load.md").write_text(table, encoding="utf-8")
        (out / "serve_load.json").write_text(json.dumps({"command": command, "ratio": ratio, "runs": rows},
                                                        indent=2) + "\n", encoding="utf-8")
    failed = [r["mode"] for r in rows if r["answered_200"] != r["requests"] or r["equal_to_predict"] != r["requests"]
              or r["exit_status"] not in (0, 130) or r["traceback"]]
    if failed:
        print(f"FAILED checks: {', '.join(failed)} (see the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
