"""A tiny scripted OpenAI-compatible server for hostile-reply tests.

``StubServer(reply)`` serves ``GET /v1/models`` (one model, ``stub``) and
hands every other request to ``reply(method, path, body) -> Reply``, so a test
crafts exactly the bytes, status and headers a misbehaving server sends.
Every request is recorded in ``requests`` as (method, path, headers, body).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b""  # bytes as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # close the connection after this many body bytes (Content-Length promises all)


def completion(*texts: str, finish_reason: str | None = "stop", **extra: Any) -> dict[str, Any]:
    """A /completions reply with one choice per text."""
    return {"object": "text_completion", "model": "stub",
            "choices": [{"index": i, "text": t, "finish_reason": finish_reason, "logprobs": None} for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, **extra}


def chat(content: str | None, finish_reason: str | None = "stop", **message: Any) -> dict[str, Any]:
    """A /chat/completions reply with one choice."""
    return {"object": "chat.completion", "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message}, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


class StubServer:
    def __init__(self, reply: Callable[[str, str, Any], Reply], models: list[str] | None = None, owned_by: str = "stub",
                 host: str = "127.0.0.1") -> None:
        self.reply, self.host = reply, host
        self.models = models or ["stub"]
        self.owned_by = owned_by
        self.models_reply: Reply | None = None  # GET /v1/models: the model list unless set
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._server.server_address[1]}/v1"

    def posts(self, path: str | None = None) -> list[Any]:
        """Bodies of the POSTs received (to ``path`` only, when given)."""
        return [b for m, p, _, b in self.requests if m == "POST" and (path is None or p == path)]

    @contextmanager
    def running(self) -> Iterator["StubServer"]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                stub.requests.append((method, self.path, dict(self.headers), body))
                if method == "GET" and self.path == "/v1/models":
                    r = stub.models_reply or Reply(body={"object": "list", "data": [{"id": m, "object": "model", "owned_by": stub.owned_by} for m in stub.models]})
                else:
                    r = stub.reply(method, self.path, body)
                data = r.body if isinstance(r.body, bytes) else json.dumps(r.body).encode()
                self.send_response(r.status)
                headers = {"Content-Type": "application/json", **r.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data if r.cut_after is None else data[: r.cut_after])
                if r.cut_after is not None:
                    self.close_connection = True

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        server = type("Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6 if ":" in self.host else socket.AF_INET})
        self._server = server((self.host, 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()
