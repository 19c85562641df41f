"""Line-oriented JSON channel over a container's attached stdin/stdout.

``docker attach`` on a non-TTY container multiplexes stdout and stderr into
frames: an 8-byte header (stream id, 3 zero bytes, big-endian length) and the
payload.  The executor writes protocol lines to stdout; anything it writes on
stderr is kept (bounded) for error messages.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from typing import Any

_HEADER = struct.Struct(">BxxxI")
_STDERR_KEEP = 8192


class ChannelError(Exception):
    """The channel broke: EOF, timeout or garbage (protocol desync)."""


class ChannelTimeout(ChannelError):
    pass


class Channel:
    def __init__(self, sock: Any) -> None:
        # docker-py returns a SocketIO wrapper for unix sockets; use the socket.
        self._sock: socket.socket = getattr(sock, "_sock", sock)
        self._keepalive = sock  # keeps the HTTP response (and socket) alive
        self._raw = bytearray()  # undecoded frame bytes
        self._out = bytearray()  # stdout payload not yet split into lines
        self.stderr = bytearray()
        self.closed = False

    def send(self, msg: dict[str, Any], timeout_s: float = 30.0) -> None:
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        try:
            self._sock.settimeout(timeout_s)
            self._sock.sendall(data)
        except OSError as exc:
            raise ChannelError(f"write to executor failed: {exc}") from exc

    def recv(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            nl = self._out.find(b"\n")
            if nl >= 0:
                line = bytes(self._out[:nl])
                del self._out[: nl + 1]
                try:
                    msg = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    raise ChannelError(f"protocol desync: {line[:200]!r}") from exc
                if not isinstance(msg, dict):
                    raise ChannelError(f"protocol desync: {line[:200]!r}")
                return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout(f"no answer from executor within {timeout_s:.1f}s")
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                continue
            try:
                chunk = self._sock.recv(1 << 20)
            except OSError as exc:
                raise ChannelError(f"read from executor failed: {exc}") from exc
            if not chunk:
                self.closed = True
                raise ChannelError("executor closed the channel" + self._stderr_hint())
            self._raw += chunk
            self._demux()

    def _demux(self) -> None:
        while len(self._raw) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(self._raw)
            if stream not in (1, 2):
                raise ChannelError("protocol desync: bad attach frame header")
            if len(self._raw) < _HEADER.size + size:
                return
            payload = self._raw[_HEADER.size: _HEADER.size + size]
            del self._raw[: _HEADER.size + size]
            if stream == 1:
                self._out += payload
            else:
                self.stderr = (self.stderr + payload)[-_STDERR_KEEP:]

    def _stderr_hint(self) -> str:
        tail = bytes(self.stderr).decode("utf-8", "replace").strip()
        return f" (executor stderr: {tail[-500:]})" if tail else ""

    def close(self) -> None:
        self.closed = True
        try:
            # shutdown() (unlike close()) wakes a thread blocked in select/recv.
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            self._keepalive.close()
        except Exception:
            pass
