"""Dynamic batching: requests that arrive together run through the model together.

Every model call has a fixed cost (tokenizing set-up, a DataLoader, the Python dispatch of each layer's ops, a
thread hop) and a GPU or many cores do a batch of texts in little more time than one; so a server that runs each
request on its own wastes that when many small requests arrive at once. Here every request goes into one asyncio
queue, and a single worker task takes the first waiting request, then keeps taking requests until the batch holds
`max_batch` texts, or `max_wait_ms` have passed since that first one arrived, or no request has arrived for a
quarter of `max_wait_ms` (a burst is over: waiting longer would only leave the model idle), runs ONE model call on
all of their texts in a worker thread (so that the event loop keeps accepting requests meanwhile), and hands each
request its own rows. (On a small CPU with long texts the model's arithmetic dominates and batching gains less: see
benchmarks/serve_load.py.)

Framework-free (asyncio alone): `run(texts, pairs)` is any function that returns one row per text, in order.

Granularity is the request: a request is never split across batches. One with more texts than `max_batch` is
run alone, as one call (the model function cuts it into forward batches itself). With `max_batch=1` every
request runs alone: batching is off.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

# run(texts, pairs) -> rows: one row per text (a list, a tensor, anything sliceable), in the input order
RunFn = Callable[[list[str], Optional[list[str]]], Sequence[Any]]


@dataclass
class _Request:
    texts: list[str]
    pairs: Optional[list[str]]  # None: single texts
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class BatcherClosed(RuntimeError):
    """The batcher stopped (the server is shutting down) before the request was answered."""


class Batcher:
    """`await batcher.submit(texts, pairs)` → the rows of `run` for those texts; `start()` in the event loop that
    submits, `await stop()` at the end. Counters (`batches`, `texts`, `largest_batch`, and `busy_seconds` spent in
    model calls) are there for tests, /info and benchmarks."""

    def __init__(self, run: RunFn, max_batch: int = 64, max_wait_ms: float = 10.0,
                 executor: Optional[Executor] = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self.run = run
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.executor = executor  # None: the event loop's default thread pool
        self.batches = self.texts = self.largest_batch = 0
        self.busy_seconds = 0.0
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self._held: Optional[_Request] = None  # taken from the queue but left for the next batch

    # ---------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the worker in the running event loop (the queue belongs to that loop)."""
        if self._worker is not None:
            raise RuntimeError("the batcher is already started")
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="textcls-batcher")

    async def stop(self) -> None:
        """Cancel the worker; requests still waiting get BatcherClosed. A model call already running in its
        thread finishes there (a thread cannot be interrupted), its answer unused."""
        if self._worker is None:
            return
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._worker = None
        waiting = [self._held] if self._held else []
        self._held = None
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            _fail(request, BatcherClosed("the server is shutting down"))

    async def submit(self, texts: Sequence[str], pairs: Optional[Sequence[str]] = None) -> Sequence[Any]:
        """The rows of `run` for `texts` (and `pairs`), once the batch they join has run. An exception of `run`
        is raised here, in every request of that batch."""
        if self._worker is None or self._worker.done():
            raise BatcherClosed("the batcher is not running")
        if pairs is not None and len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(list(texts), None if pairs is None else list(pairs), future))
        return await future

    # ---------------------------------------------------------------------------------------------- the worker

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            texts = [t for r in batch for t in r.texts]
            pairs = [p for r in batch for p in r.pairs] if batch[0].pairs is not None else None
            self.batches += 1
            self.texts += len(texts)
            self.largest_batch = max(self.largest_batch, len(texts))
            start = time.perf_counter()
            try:
                rows = await loop.run_in_executor(self.executor, self.run, texts, pairs)
                if len(rows) != len(texts):
                    raise RuntimeError(f"the model function gave {len(rows)} rows for {len(texts)} texts")
            except asyncio.CancelledError:  # stop(): these requests get BatcherClosed like the waiting ones
                for r in batch:
                    _fail(r, BatcherClosed("the server is shutting down"))
                raise
            except Exception as e:  # the requests of this batch fail; the worker goes on with the next one
                for r in batch:
                    _fail(r, e)
                continue
            finally:
                self.busy_seconds += time.perf_counter() - start
            offset = 0
            for r in batch:
                if not r.future.done():  # a client that went away cancelled its future
                    r.future.set_result(rows[offset:offset + len(r.texts)])
                offset += len(r.texts)

    async def _collect(self) -> list[_Request]:
        """The next batch: the first waiting request, then those that arrive within max_wait of its arrival (or
        were already waiting) and less than max_wait / 4 after the one before, while they fit in max_batch texts and
        are of the same kind (single texts or pairs: one model call takes one kind). A request that does not fit is
        held for the next batch."""
        first = self._held or await self._queue.get()
        self._held = None
        batch, size = [first], len(first.texts)
        # from the first one's arrival: a request that already waited through the previous model call waits no more
        deadline = first.arrived + self.max_wait
        while size < self.max_batch:
            # ... or until the arrivals pause for a quarter of max_wait: a burst of requests is then over, and
            # waiting out the rest of max_wait would leave the model idle
            request = await self._next(min(deadline - time.monotonic(), self.max_wait / 4))
            if request is None:
                break
            if size + len(request.texts) > self.max_batch or (request.pairs is None) != (first.pairs is None):
                self._held = request
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _next(self, timeout: float) -> Optional[_Request]:
        """A waiting request, or one that arrives within `timeout` seconds; None when none does. (Not
        asyncio.wait_for: before Python 3.12 it can drop an item that arrived just as the timeout fired.)"""
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout <= 0:
            return None
        getter = asyncio.ensure_future(self._queue.get())
        try:
            await asyncio.wait({getter}, timeout=timeout)
        finally:  # timed out, or the worker was cancelled: Queue.get takes its item only when it returns, so a
            if not getter.done():  # get cancelled before that leaves the item in the queue for the next batch
                getter.cancel()
        return getter.result() if getter.done() and not getter.cancelled() else None


def _fail(request: _Request, error: BaseException) -> None:
    if not request.future.done():
        request.future.set_exception(error)
