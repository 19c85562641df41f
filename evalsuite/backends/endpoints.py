"""A pool of OpenAI-compatible endpoints: least outstanding requests, retries, draining.

Every call goes through :meth:`EndpointPool.call`, which picks the healthy
endpoint with the fewest requests in flight, bounds concurrency, applies the
client-side rate limits, and retries (tenacity: exponential backoff with full
jitter, at least the server's ``Retry-After``) on 408/409/429, 5xx, timeouts,
dropped connections and malformed replies -- the conditions the official
``openai`` client retries too.  A retry goes to another endpoint than the ones
the request failed on, where there is one.  An endpoint that fails
``drain_after`` times in a row (5xx, 429, timeouts, malformed replies, a 404 for
the model) is drained: requests go elsewhere while a health check polls it
back.  The last healthy endpoint is never drained.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import json
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from evalsuite.errors import UserError

T = TypeVar("T")
RETRY_STATUS = {408, 409, 429}  # plus every 5xx
HEALTH_TIMEOUT = 10.0  # seconds for a health check or a start-up call: a live server lists its models at once
# vLLM, OpenAI, Ollama: an endpoint that no longer serves the model (restarted with another), not a bad request
MODEL_MISSING = re.compile(r"model\b.{0,200}\b(does not exist|not found)", re.I)
QUOTA_EXHAUSTED = re.compile(r"insufficient_quota|billing_hard_limit_reached|budget.{0,20}exceeded", re.I)  # OpenAI, litellm


class CallFailed(Exception):
    """A call that failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, reason: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retryable, self.status, self.retry_after = reason, retryable, status, retry_after


class MalformedReply(ValueError):
    """A 200 reply whose body is not the JSON the API specifies (retried)."""


class ReplyTooLarge(ValueError):
    """A body past ``PoolSettings.max_reply_bytes`` (not retried: it would come again)."""


class Unsupported(ValueError):
    """A well-formed reply that shows the server cannot do what was asked
    (e.g. it ignores ``n``): asking again would not help, so it is not retried."""


@dataclass
class Endpoint:
    url: str  # base URL ending in /v1 (or the API's equivalent), credentials stripped
    outstanding: int = 0
    failures: int = 0  # consecutive
    drained: bool = False
    drains: int = 0  # times drained so far: health checks back off
    served: int = 0
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # basic auth from user:password@ in the URL given

    @property
    def root(self) -> str:
        """The server root, where vLLM serves /health, /version and /tokenize."""
        return re.sub(r"/v1/?$", "", self.url)


@dataclass(frozen=True)
class PoolSettings:
    timeout: float = 300.0  # seconds per attempt, the whole reply included
    max_retries: int = 5
    concurrency: int = 32  # requests in flight over the whole pool
    requests_per_s: float | None = None
    tokens_per_min: float | None = None
    drain_after: int = 3  # consecutive failures that drain an endpoint
    health_interval: float = 2.0  # seconds between health checks of a drained endpoint
    max_retry_wait: float = 60.0  # cap on one backoff, Retry-After included
    max_reply_bytes: int = 256 * 2**20  # a bigger body is refused as it arrives, not held in memory


def check_url(url: str, *, credentials_allowed: bool) -> None:
    """Raise ``UserError`` unless ``url`` is an http(s) URL with a host and a valid
    port, and no query or fragment (the API path is appended to it).  A
    ``user:password@`` is refused where the URL would be recorded in run.json;
    the error never repeats the password."""
    shown = _without_credentials(url)
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:  # "host:abc", "host:99999", "[::1"
        raise UserError(f"base_url {shown!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UserError(f"base_url {shown!r} must start with http:// or https://")
    if not port_ok:
        raise UserError(f"base_url {shown!r} has no valid port (1-65535)")
    if not parts.hostname:
        raise UserError(f"base_url {shown!r} has no host")
    if ":" not in parts.hostname:  # not IPv6: a name DNS can carry ("api..example.com" cannot be looked up)
        try:
            parts.hostname.encode("idna")
        except UnicodeError:
            raise UserError(f"base_url {shown!r} has no valid host name: an empty label (..) or one over 63 characters") from None
    endpoint = re.search(r"/(chat/completions|completions|models)/?$", parts.path)
    if endpoint:
        raise UserError(f"base_url {shown!r} names an endpoint: give the API root, without /{endpoint.group(1)}")
    if parts.query or parts.fragment:
        raise UserError(f"base_url {shown!r} must not have a query string or fragment: the API path is appended to it")
    if (parts.username or parts.password) and not credentials_allowed:
        raise UserError(f"base_url {shown!r} carries a user name or password, and -M values are recorded in run.json: "
                        "give the URL in $OPENAI_BASE_URL instead, or a key with -M api_key_env=NAME")


def _without_credentials(url: str) -> str:
    return re.sub(r"(//)[^/@]*@", r"\1***@", url.strip())


def _credentials(url: str) -> dict[str, str]:
    """The HTTP basic-auth header for the URL's user:password@, which ``clean_url`` drops."""
    parts = urlsplit(url.strip())
    if not (parts.username or parts.password):
        return {}
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


def clean_url(url: str) -> str:
    """The URL without user:password@ (never recorded) or a trailing slash."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets (hostname drops them)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, "")).rstrip("/")


class EndpointPool:
    """Spreads calls over endpoints; all methods run on one event loop."""

    def __init__(self, urls: list[str], settings: PoolSettings, headers: dict[str, str] | None = None) -> None:
        self._headers = headers or {}
        # what no reason may repeat: the API key and URL passwords (a proxy's error page may echo them)
        passwords = {p for u in urls if (p := urlsplit(u.strip()).password)}
        secrets = {v.split(" ", 1)[-1] for v in self._headers.values()} | passwords | {unquote(p) for p in passwords}
        self._secrets = {s for s in secrets if len(s) >= 4}  # a shorter one would mask letters of every message
        # an API key (Bearer) wins over a URL's user:password
        self.endpoints = [Endpoint(clean_url(u), headers={} if "Authorization" in self._headers else _credentials(u)) for u in urls]
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        rps = settings.requests_per_s
        # one request every 1/rps seconds below 1/s: a bucket smaller than one request refuses every acquire
        self._rps = (AsyncLimiter(rps, 1) if rps >= 1 else AsyncLimiter(1, 1 / rps)) if rps else None
        self._tpm = AsyncLimiter(settings.tokens_per_min, 60) if settings.tokens_per_min else None
        self._watchers: set[asyncio.Task] = set()
        # 0.5 s, 1 s, 2 s, ... plus up to 1 s of jitter, so clients that failed together do not retry together
        self._backoff = wait_exponential(multiplier=0.5, max=settings.max_retry_wait) + wait_random(0, 1)
        self.calls = 0  # HTTP requests sent, retries included
        self.auto_drain = True  # drain an endpoint after drain_after failures in a row

    def session(self) -> aiohttp.ClientSession:
        """The HTTP session of every endpoint, created on the loop that uses it.

        aiohttp, not httpx: measured by bench/bench_dispatch.py, httpx spent
        ~0.9 ms of CPU per request (its pool scans every connection, with a
        poll() each, whenever a request starts or ends) and aiohttp ~0.25 ms,
        which is what lets one core dispatch over a thousand requests/s."""
        if self._session is None:
            s = self.settings
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=s.concurrency + len(self.endpoints), limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.quick_timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _fetch(self, method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> "Reply":
        limit = self.settings.max_reply_bytes
        # no redirects: a POST redirected with 301/302 arrives as a GET, and the key would follow it
        async with self.session().request(method, url, json=body, headers=headers, allow_redirects=False) as r:
            data = bytearray()
            async for chunk in r.content.iter_chunked(1 << 16):
                data += chunk
                if len(data) > limit:
                    raise ReplyTooLarge(f"a reply from {url} larger than {limit:,} bytes")
            return Reply(r.status, r.headers, bytes(data), r.reason or "")

    @property
    def quick_timeout(self) -> float:
        """Seconds per attempt of a call a live server answers at once (its model list, its
        version): a server that accepts connections but hangs fails the start in seconds,
        not after ``timeout`` (300 s) times each retry."""
        return min(HEALTH_TIMEOUT, self.settings.timeout)

    async def aclose(self) -> None:
        for w in self._watchers:
            w.cancel()
        if self._session is not None:
            await self._session.close()

    # -- calls -----------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        parse: Callable[[Any], T] = lambda data: data,
        *,
        endpoint: Endpoint | None = None,
        tokens: int = 0,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> tuple[T, Endpoint]:
        """``method path`` with retries; returns the parsed reply and who sent it.

        ``path`` starts with ``/`` and is appended to the endpoint's URL (or to
        its root when it starts with ``//``); ``body`` may be a function that
        gives it, called at each attempt.  ``parse`` turns the JSON reply
        into a result and raises ``MalformedReply`` (or KeyError/TypeError) if
        the reply is not what the API specifies.  ``tokens`` is the estimated
        cost for the tokens/min limit; ``timeout`` (seconds per attempt) overrides
        the pool's, e.g. ``quick_timeout``.  Raises ``CallFailed`` after the last
        attempt, or at once for a non-retryable status (400, 401, 404, ...).
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt((self.settings.max_retries if retries is None else retries) + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, CallFailed) and e.retryable),
            reraise=True,
        )
        attempts, tried = 0, []  # tried: the endpoints attempts went to, so that a retry goes elsewhere
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    return await self._attempt(method, path, body, parse, endpoint, tokens, tried, timeout or self.settings.timeout)
        except CallFailed as exc:
            if attempts > 1:
                exc.reason = f"{exc.reason} (after {attempts} attempts)"
            for secret in self._secrets:
                exc.reason = exc.reason.replace(secret, "***")
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, backoff), self.settings.max_retry_wait)
        return backoff

    async def _attempt(
        self, method: str, path: str, body: Any, parse: Callable[[Any], T], pinned: Endpoint | None, tokens: int,
        tried: list[Endpoint], timeout: float,
    ) -> tuple[T, Endpoint]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.concurrency)
        if self._tpm is not None and tokens:
            await self._tpm.acquire(min(tokens, self._tpm.max_rate))
        if self._rps is not None:
            await self._rps.acquire()
        async with self._slots:
            ep = pinned or self._pick(avoid=tried)
            tried.append(ep)
            url = ep.root + path[1:] if path.startswith("//") else ep.url + path
            ep.outstanding += 1
            self.calls += 1
            try:
                # wait_for bounds the whole reply: a server that trickles bytes
                # slower than the read timeout would otherwise never time out.
                payload = body() if callable(body) else body
                reply = await asyncio.wait_for(self._fetch(method, url, payload, ep.headers), timeout)
            except asyncio.TimeoutError:
                raise self._failed(ep, f"no reply from {ep.url} within {timeout:g} s", retryable=True) from None
            except ReplyTooLarge as exc:
                raise CallFailed(str(exc), retryable=False) from None
            except (aiohttp.ClientError, OSError) as exc:
                raise self._failed(ep, f"connection to {ep.url} failed: {_one_line(str(exc)) or type(exc).__name__}", retryable=True) from None
            finally:
                ep.outstanding -= 1
        if 300 <= reply.status < 400:
            where = _without_credentials(reply.headers.get("location", "nowhere"))
            raise CallFailed(f"HTTP {reply.status} from {url}: redirected to {where} (give that URL as base_url)",
                             retryable=False, status=reply.status)
        if reply.status >= 400:
            status = reply.status
            # an exhausted quota or budget is sent as a 429 too, and no wait refills it
            retryable = (status in RETRY_STATUS or status >= 500) and not QUOTA_EXHAUSTED.search(reply.text)
            reason = f"HTTP {status} from {url}: {_error_message(reply)}"
            # a 503 says when to come back as often as a 429 does
            retry_after = _retry_after(reply)
            if status >= 500:
                raise self._failed(ep, reason, retryable=True, status=status, retry_after=retry_after)
            if status == 429 and retryable:  # this endpoint is overloaded or rate-limited, not the pool: it may be drained
                raise self._failed(ep, reason, retryable=retryable, status=status, retry_after=retry_after)
            if status == 404 and MODEL_MISSING.search(reason) and self._others_healthy(ep):  # the others may serve it
                raise self._failed(ep, reason, retryable=True, status=status)
            raise CallFailed(reason, retryable=retryable, status=status, retry_after=retry_after)
        try:
            data = reply.json()
        except ValueError:  # an HTML login or error page, bytes that are not UTF-8, a cut body
            kind = reply.headers.get("content-type", "no content type")
            raise self._failed(ep, f"malformed reply from {url}: not JSON ({kind}): {_one_line(reply.text)[:120]!r}",
                               retryable=True) from None
        try:
            result = parse(data)
        except Unsupported as exc:
            raise CallFailed(f"{url}: {exc}", retryable=False) from None
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:  # MalformedReply is a ValueError
            detail = f": {exc}" if isinstance(exc, MalformedReply) else ""
            raise self._failed(ep, f"malformed reply from {url}{detail}", retryable=True) from None
        ep.failures = 0
        ep.served += 1
        return result, ep

    # -- health and draining ----------------------------------------------------

    def _pick(self, avoid: Sequence[Endpoint] = ()) -> Endpoint:
        """The healthy endpoint with the fewest requests in flight, preferring one not in
        ``avoid`` (where this request's earlier attempts failed): an endpoint that fails fast
        has the fewest in flight, and would otherwise take every retry."""
        healthy = [e for e in self.endpoints if not e.drained]
        if not healthy:
            raise CallFailed("every endpoint is drained: " + ", ".join(e.url for e in self.endpoints), retryable=True)
        return min([e for e in healthy if e not in avoid] or healthy, key=lambda e: e.outstanding)

    def _failed(
        self, ep: Endpoint, reason: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> CallFailed:
        ep.failures += 1
        # never the last healthy one: with all failing (a rate limit they share, an outage) requests keep
        # trying one, honouring its Retry-After, and fail with its error rather than "every endpoint is drained"
        if self.auto_drain and ep.failures >= self.settings.drain_after and self._others_healthy(ep):
            self.drain(ep, reason)
        return CallFailed(reason, retryable=retryable, status=status, retry_after=retry_after)

    def _others_healthy(self, ep: Endpoint) -> bool:
        return any(e is not ep and not e.drained for e in self.endpoints)

    def drain(self, ep: Endpoint, reason: str) -> None:
        """Send no more requests to ``ep`` until its health check passes (one watcher per drain)."""
        if ep.drained:
            return
        ep.drained = True
        ep.drains += 1
        print(f"evalsuite: draining endpoint {ep.url} ({reason})", file=sys.stderr)
        task = asyncio.get_running_loop().create_task(self._watch(ep))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _watch(self, ep: Endpoint) -> None:
        # An endpoint that passes health checks yet keeps failing requests is
        # readmitted less and less often (2 s, 4 s, 8 s, ... at most a minute).
        interval = min(60.0, self.settings.health_interval * 2 ** (ep.drains - 1))
        while True:
            await asyncio.sleep(interval)
            if await self.healthy(ep):
                ep.drained, ep.failures = False, 0
                print(f"evalsuite: endpoint {ep.url} is healthy again", file=sys.stderr)
                return

    async def healthy(self, ep: Endpoint) -> bool:
        """GET <base>/models answers 200 with JSON (any OpenAI-compatible server)."""
        try:
            reply = await asyncio.wait_for(self._fetch("GET", ep.url + "/models", None, ep.headers), self.quick_timeout)
            return reply.status == 200 and isinstance(reply.json(), dict)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return False


@dataclass(frozen=True)
class Reply:
    """A whole HTTP reply, read inside the call's timeout."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    reason: str

    def json(self) -> Any:
        """The body as JSON; raises ``ValueError`` where it is not (nested too deeply included)."""
        try:
            return json.loads(self.body)
        except RecursionError:  # "[[[[...": a hostile or broken server, not a crash of the run
            raise ValueError("JSON nested too deeply") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _retry_after(reply: Reply) -> float | None:
    """Seconds from a Retry-After (seconds or HTTP date) or retry-after-ms header;
    None where the header is absent or is no finite time (garbage, "nan", a
    date in the year 99999), so a bad header falls back to the backoff."""
    ms = _finite(reply.headers.get("retry-after-ms"))
    if ms is not None:
        return max(0.0, ms / 1000)
    value = reply.headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT (RFC 9110 5.6.7)
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def _finite(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _error_message(reply: Reply) -> str:
    """The server's own message: OpenAI's {"error": {"message"}}, vLLM's {"message"}, or the text."""
    try:
        data = reply.json()
    except ValueError:  # not JSON (json.JSONDecodeError, or bytes that are not UTF-8)
        return _one_line(reply.text)[:300] or reply.reason
    if isinstance(data, dict):
        err = data.get("error")
        msg = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else data.get("message") or data.get("detail")
        if msg:
            return _one_line(str(msg))[:500]
    return _one_line(json.dumps(data))[:300] if data else reply.reason  # "{}" says nothing


def _one_line(text: str) -> str:
    return " ".join(text.split())
