"""The opt-in response cache (``--cache DIR`` or ``$EVALSUITE_RESPONSE_CACHE``).

A response is keyed by the model's identity (its id, revision or file hash,
and the server's model root) plus the exact request: the HTTP body for
served models, the request record for local ones.  Deterministic requests
are cached -- greedy, log-likelihood, or sampled with a seed; unseeded
samples never are.  One SQLite file in WAL mode, shared safely by concurrent
runs.  :class:`CachedBackend` gives any backend the same cache (a judge's
calls included); the OpenAI-compatible backend keys on its own HTTP bodies.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evalsuite.backends.base import Backend, ChoiceRequest, GenerateRequest, RequestFailure
from evalsuite.errors import UserError
from evalsuite.records import LoglikelihoodResult, ModelInfo, ModelOutput

ENV_VAR = "EVALSUITE_RESPONSE_CACHE"


class ResponseCache:
    """Responses stored under ``sha256(identity, request)`` in ``DIR/responses.sqlite``."""

    def __init__(self, folder: str | Path) -> None:
        """Open (or create) the cache; raises ``UserError`` where ``folder`` is a file, cannot
        be written, or holds a damaged or foreign ``responses.sqlite``."""
        path = Path(folder).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"cannot open the response cache in {path}: it is a file, not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path / "responses.sqlite", timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, response TEXT NOT NULL)")
            self._db.execute("SELECT key, response FROM responses LIMIT 1").fetchall()  # a foreign table of that name
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the response cache in {path}: {exc} (delete {path / 'responses.sqlite'} "
                            "to start an empty one)") from None
        self.folder = path
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.broken: str | None = None  # why the cache was turned off mid-run

    @staticmethod
    def key(identity: dict[str, Any], request: Any) -> str:
        blob = json.dumps({"identity": identity, "request": request}, sort_keys=True, ensure_ascii=False)
        # surrogatepass: a lone surrogate (a "\ud83d" escape from data or a server) keys, not crashes
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, identity: dict[str, Any], request: Any) -> Any | None:
        """The stored JSON response, or None (counted as a miss; also once the cache is off)."""
        with self._lock:
            try:
                row = None if self.broken else self._db.execute(
                    "SELECT response FROM responses WHERE key = ?", (self.key(identity, request),)).fetchone()
                response = None if row is None else json.loads(row[0])
            except ValueError:  # one damaged row: a miss, the answer is stored again
                response = None
            except sqlite3.Error as exc:
                self._turn_off(exc)
                response = None
            if response is None:
                self.misses += 1
            else:
                self.hits += 1
        return response

    def put(self, identity: dict[str, Any], request: Any, response: Any) -> None:
        """Store a response; a write that fails (disk full, file damaged or made
        read-only mid-run) turns the cache off with one warning, never losing the result."""
        with self._lock:
            if self.broken:
                return
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO responses (key, response) VALUES (?, ?)",
                    # ASCII escapes: SQLite cannot store a lone surrogate, JSON's \u escape can
                    (self.key(identity, request), json.dumps(response)),
                )
            except sqlite3.Error as exc:
                self._turn_off(exc)

    def _turn_off(self, exc: Exception) -> None:
        self.broken = f"{type(exc).__name__}: {exc}"
        print(f"evalsuite: warning: response cache {self.folder / 'responses.sqlite'} turned off for this run ({self.broken})",
              file=sys.stderr)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def deterministic_body(body: dict[str, Any]) -> bool:
    """Whether an OpenAI-style request body always gets the same answer:
    greedy (temperature 0) or seeded; log-likelihood requests are greedy."""
    return float(body.get("temperature", 1.0)) == 0.0 or body.get("seed") is not None


def model_identity(info: ModelInfo) -> dict[str, Any]:
    """What makes two models the same for caching: id, revision or file hash,
    the server's model root, its kind and version (two servers may serve
    different weights, or quantisations, under one name; an upgrade changes
    kernels), and the settings that change outputs."""
    server = info.server
    served = {"owned_by": server.models_entry.get("owned_by"), "server_version": server.version} if server else {}
    return {**served,
        "id": info.id,
        "backend": info.backend,
        "revision": info.revision,
        "file_hash": info.file_hash,
        "root": server.models_entry.get("root") if server else None,
        "dtype": info.dtype,
        "chat_template": info.chat_template,
        "chat_template_hash": info.chat_template_hash,
    }


class CachedBackend(Backend):
    """Any backend behind the response cache; hits are marked ``cached``."""

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:  # noqa: D107 - not built from a spec
        self.inner, self.cache = inner, cache
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.info = inner.info
        self.identity = model_identity(inner.info)

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput | RequestFailure]]:
        def key(r: GenerateRequest) -> Any:
            if not (r.config.greedy or r.config.seed is not None):
                return None
            return {"generate": _dump(r.prompt), "config": r.config.model_dump(mode="json")}

        yield from self._through_cache(requests, key, ModelOutput, self.inner.generate)

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult | RequestFailure]]:
        def key(r: ChoiceRequest) -> Any:
            return {"loglikelihood": _dump(r.context), "continuations": list(r.continuations)}

        yield from self._through_cache(requests, key, LoglikelihoodResult, self.inner.loglikelihood)

    def _through_cache(self, requests, key, record, compute):  # type: ignore[no-untyped-def]
        keys = [key(r) for r in requests]
        misses = []
        for i, k in enumerate(keys):
            hit = self.cache.get(self.identity, k) if k is not None else None
            try:
                result = None if hit is None else record.model_validate(hit)
            except ValueError:  # a row another version wrote: ask the model again
                result = None
            if result is None:
                misses.append(i)
            else:
                yield i, result.model_copy(update={"cached": True})
        if not misses:
            return
        for j, result in compute([requests[i] for i in misses]):
            i = misses[j]
            if keys[i] is not None and not isinstance(result, RequestFailure):
                self.cache.put(self.identity, keys[i], result.model_dump(mode="json"))
            yield i, result

    @property
    def effective_batch_size(self) -> int | str:
        return self.inner.effective_batch_size

    def close(self) -> None:
        self.inner.close()
        self.cache.close()


def _dump(prompt: Any) -> Any:
    return prompt if isinstance(prompt, str) else [m.model_dump() for m in prompt]
