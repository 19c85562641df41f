"""A fault-injecting HTTP proxy on 127.0.0.1, in front of a real server.

Every ``fault_every``-th call (by arrival) gets the next fault of ``faults``
instead of the server's reply, so a run sees each kind a known number of
times.  ``rewrite(request_body, reply)`` can alter the server's replies, to
act as a server with known defects (``shift_echo``, ``ignore_n``).  It
counts the calls it saw.
HTTP/1.1 with keep-alive, Content-Length bodies only: what httpx sends.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

FAULTS = ("429", "500", "503", "drop", "stall", "malformed", "error_200")


class FaultProxy:
    def __init__(self, upstream: str, fault_every: int = 0, faults: tuple[str, ...] = FAULTS, stall_s: float = 8.0,
                 only_posts: bool = False) -> None:
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:8000
        self.fault_every, self.faults, self.stall_s, self.only_posts = fault_every, faults, stall_s, only_posts
        self.rewrite: Callable[[dict, dict], dict] | None = None
        self.on_request: Callable[[dict[str, str]], None] | None = None  # sees each request's headers (lower-case)
        self.calls: Counter[str] = Counter()  # "POST /v1/completions" -> n
        self.injected: Counter[str] = Counter()
        self._seen = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self) -> int:
        return sum(n for k, n in self.calls.items() if k.startswith("POST"))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
                body = await reader.readexactly(length) if length else b""
                self.calls[f"{method} {target}"] += 1
                if self.on_request:
                    self.on_request({k.lower(): v for k, v in headers.items()})
                fault = self._next_fault(method)
                if fault == "drop":
                    return
                if fault == "stall":
                    await asyncio.sleep(self.stall_s)
                    return
                status, payload, extra = await self._reply(fault, method, target, headers, body)
                head_out = [f"HTTP/1.1 {status} X", f"content-length: {len(payload)}", "content-type: application/json"]
                head_out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def _next_fault(self, method: str) -> str | None:
        if not self.fault_every or (self.only_posts and method != "POST"):
            return None
        self._seen += 1
        if self._seen % self.fault_every:
            return None
        fault = self.faults[(self._seen // self.fault_every - 1) % len(self.faults)]
        self.injected[fault] += 1
        return fault

    async def _reply(self, fault: str | None, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        error = json.dumps({"error": {"message": f"injected {fault}", "type": "InjectedFault"}}).encode()
        if fault == "429":
            return 429, error, {"retry-after": "1"}
        if fault in ("500", "503"):
            return int(fault), error, {}
        if fault == "malformed":
            return 200, b'{"id": "cmpl-x", "choices": [{"text": "So the answer is', {}
        if fault == "error_200":
            return 200, error, {}
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "authorization")}
        reply = await self._client.request(method, self.upstream + target, content=body, headers=keep)
        payload = reply.content
        if self.rewrite and body and reply.status_code == 200:
            payload = json.dumps(self.rewrite(json.loads(body), json.loads(payload))).encode()
        return reply.status_code, payload, {}

    @contextmanager
    def running(self) -> Iterator["FaultProxy"]:
        loop = asyncio.new_event_loop()
        started = threading.Event()

        async def serve() -> None:
            self._client = httpx.AsyncClient(timeout=600)
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            try:
                async with server:
                    await server.serve_forever()
            except asyncio.CancelledError:
                pass
            finally:
                await self._client.aclose()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield self
        finally:
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
            thread.join(10)


def shift_echo(request: dict, reply: dict) -> dict:
    """Echoed log-probabilities one position late (llama.cpp's echo bug)."""
    if request.get("echo"):
        for choice in reply.get("choices", []):
            lps = (choice.get("logprobs") or {}).get("token_logprobs")
            if lps:
                choice["logprobs"]["token_logprobs"] = [None, None] + lps[1:-1]
    return reply


def ignore_n(request: dict, reply: dict) -> dict:
    """One completion whatever ``n`` asked for (llama.cpp)."""
    reply["choices"] = reply.get("choices", [])[:1]
    return reply
