"""Endpoint pool decisions that need no server: backoff, Retry-After, picking, URLs."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from evalsuite.backends.endpoints import CallFailed, EndpointPool, PoolSettings, _error_message, _retry_after, clean_url
from evalsuite.backends.openai_api import OpenAISettings
from evalsuite.errors import UserError


class _State:
    """The part of tenacity's RetryCallState the wait strategy reads."""

    def __init__(self, attempt: int, exc: Exception) -> None:
        self.attempt_number = attempt
        self.outcome = type("Outcome", (), {"exception": lambda _self: exc})()


def test_backoff_grows_with_jitter_and_honours_retry_after():
    pool = EndpointPool(["http://127.0.0.1:1/v1"], PoolSettings(max_retry_wait=30))
    plain = CallFailed("503", retryable=True)
    waits = [pool._wait(_State(n, plain)) for n in (1, 2, 3, 4)]
    assert all(0.5 * 2 ** (n - 1) <= w <= 0.5 * 2 ** (n - 1) + 1 for n, w in zip((1, 2, 3, 4), waits))
    assert pool._wait(_State(1, CallFailed("429", retryable=True, retry_after=7))) >= 7
    assert pool._wait(_State(1, CallFailed("429", retryable=True, retry_after=600))) == 30  # capped


def test_retry_after_in_seconds_date_or_milliseconds():
    def reply(**headers: str) -> httpx.Response:
        return httpx.Response(429, headers=headers)

    assert _retry_after(reply(**{"retry-after": "3"})) == 3
    assert _retry_after(reply(**{"retry-after-ms": "250"})) == 0.25
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 <= _retry_after(reply(**{"retry-after": when})) <= 20
    assert _retry_after(reply()) is None


def test_server_error_messages_become_one_line():
    openai_style = httpx.Response(400, json={"error": {"message": "This model's maximum context length\nis 8192 tokens."}})
    assert _error_message(openai_style) == "This model's maximum context length is 8192 tokens."
    assert _error_message(httpx.Response(404, json={"message": "The model `x` does not exist."})) == "The model `x` does not exist."
    assert _error_message(httpx.Response(502, text="<html>\n<b>Bad gateway</b>\n</html>")) == "<html> <b>Bad gateway</b> </html>"


def test_least_outstanding_requests_and_drained_endpoints():
    pool = EndpointPool(["http://a/v1", "http://b/v1", "http://c/v1"], PoolSettings())
    a, b, c = pool.endpoints
    a.outstanding, b.outstanding, c.outstanding = 3, 1, 2
    assert pool._pick() is b
    b.drained = True
    assert pool._pick() is c
    a.drained = c.drained = True
    with pytest.raises(CallFailed, match="every endpoint is drained") as exc:
        pool._pick()
    assert exc.value.retryable


def test_credentials_never_stay_in_a_recorded_url(monkeypatch):
    assert clean_url(" https://user:secret@api.example.com:8443/v1/ ") == "https://api.example.com:8443/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://u:p@127.0.0.1:8000/v1,http://127.0.0.1:8001/v1")
    settings = OpenAISettings.parse({})
    pool = EndpointPool(settings.base_urls, settings.pool)
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]


@pytest.mark.parametrize("extra, message", [
    ({"base_url": "http://x/v1", "api_key": "sk-1"}, "environment variable"),
    ({"base_url": "http://x/v1", "concurency": "4"}, "unknown -M option 'concurency'; did you mean concurrency"),
    ({"base_url": "ftp://x/v1"}, "must start with http"),
    ({"base_url": "http://x/v1", "concurrency": "0"}, "must be positive"),
    ({"base_url": "http://x/v1", "timeout": "soon"}, "must be a number"),
    ({"base_url": "http://x/v1", "loglikelihood": "maybe"}, "auto, on or off"),
    ({"base_url": "http://x/v1", "prefill": "guess"}, "prefill must be one of"),
])
def test_bad_options_are_one_clear_line(extra, message):
    with pytest.raises(UserError, match=message) as exc:
        OpenAISettings.parse(extra)
    assert "\n" not in str(exc.value)
