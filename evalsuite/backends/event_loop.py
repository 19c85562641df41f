"""A private asyncio loop on a daemon thread, behind synchronous calls.

Backends are synchronous iterators (the runner persists each result as it is
yielded); HTTP backends do their I/O concurrently on this loop and hand the
results over through a queue as they complete.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """One event loop, run forever on a daemon thread until :meth:`close`."""

    def __init__(self, name: str = "evalsuite-http") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (or exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def as_completed(self, coros: Sequence[Coroutine[Any, Any, T]]) -> Iterator[tuple[int, T]]:
        """Yield ``(index, result)`` in completion order; an exception is re-raised
        in the caller.  Closing the iterator early cancels what is still running."""
        done: queue.SimpleQueue[tuple[int, Any, BaseException | None]] = queue.SimpleQueue()

        async def one(i: int, coro: Awaitable[T]) -> None:
            try:
                done.put((i, await coro, None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                done.put((i, None, exc))

        async def start() -> list[asyncio.Task]:
            # One hand-over for the whole batch: a wake-up of the loop per
            # request cost the driver ~0.1 ms each (bench/bench_dispatch.py).
            return [asyncio.ensure_future(one(i, c)) for i, c in enumerate(coros)]

        tasks = self.run(start())
        try:
            for _ in tasks:
                i, result, exc = _get(done)
                if exc is not None:
                    raise exc
                yield i, result
        finally:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks if not t.done()])

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(drain(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


def _get(q: queue.SimpleQueue) -> Any:
    # Short waits keep the main thread responsive to Ctrl-C.
    while True:
        try:
            return q.get(timeout=0.5)
        except queue.Empty:
            continue
