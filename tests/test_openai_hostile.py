"""The OpenAI-compatible backend against a scripted server that misbehaves.

Each test serves crafted bytes over real HTTP (tests/openai_stub.py) and pins
what becomes of them: a retry, a per-sample ``generation_error`` with a clear
reason (never a scored empty answer), or one ``error:`` line before any work.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from evalsuite.backends.base import BackendOptions, GenerateRequest, RequestFailure
from evalsuite.backends.endpoints import CallFailed, EndpointPool, PoolSettings, _retry_after
from evalsuite.backends.openai_api import OpenAIBackend
from evalsuite.records import GenerationConfig, Message
from tests.openai_stub import Reply, StubServer, chat, completion

CHAT = [Message(role="user", content="Say yes.")]


def backend(stub: StubServer, **extra: str) -> OpenAIBackend:
    return OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "loglikelihood": "off", "prefill": "messages",
                                                       "max_retries": "1", **extra}))


def generate_one(reply, prompt=CHAT, **config):
    """(result, POST bodies) of one request against a server that answers ``reply``."""
    stub = StubServer(reply if callable(reply) else lambda *_: reply)
    with stub.running():
        b = backend(stub)
        try:
            out = dict(b.generate([GenerateRequest(prompt, GenerationConfig(**{"max_new_tokens": 8, **config}))]))
        finally:
            b.close()
    return out[0], stub.posts()


@pytest.mark.parametrize("header", [
    {"retry-after": "Sun, 06 Nov 99999999 08:49:37 GMT"}, {"retry-after": "Mon, 31 Feb 2020 00:00:00 GMT"},
    {"retry-after": "soon"}, {"retry-after": "nan"}, {"retry-after": "inf"}, {"retry-after-ms": "nan"},
])
def test_a_retry_after_that_is_no_time_falls_back_to_the_backoff(header):
    assert _retry_after(httpx.Response(429, headers=header)) is None


def test_retry_after_dates_without_a_zone_are_gmt(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")  # a local time 4-5 hours off GMT
    time.tzset()
    try:
        ahead = time.strftime("%a, %d %b %Y %H:%M:%S", time.gmtime(time.time() + 20))  # no zone
        assert 15 <= _retry_after(httpx.Response(429, headers={"retry-after": ahead})) <= 20
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_of_a_429_or_a_503_reaches_the_backoff(status):
    stub = StubServer(lambda *_: Reply(status, {"error": {"message": "busy"}}, {"Retry-After": "7"}))

    async def attempt() -> CallFailed:
        pool = EndpointPool([stub.base_url], PoolSettings(max_retries=0))
        try:
            await pool.call("POST", "/completions", {})
        except CallFailed as exc:
            return exc
        finally:
            await pool.aclose()
        raise AssertionError("no failure")

    with stub.running():
        exc = asyncio.run(attempt())
    assert exc.retryable and exc.retry_after == 7 and exc.status == status
    assert exc.reason.endswith(": busy")


def test_a_garbage_http_date_fails_the_sample_not_the_run():
    out, posts = generate_one(Reply(429, {}, {"Retry-After": "Sun, 06 Nov 99999999 08:49:37 GMT"}))
    assert isinstance(out, RequestFailure) and "HTTP 429" in out.reason and "Too Many Requests" in out.reason
    assert len(posts) == 2  # retried once, as told
