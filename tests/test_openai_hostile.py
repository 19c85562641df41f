"""The OpenAI-compatible backend against a scripted server that misbehaves.

Each test serves crafted bytes over real HTTP (tests/openai_stub.py) and pins
what becomes of them: a retry, a per-sample ``generation_error`` with a clear
reason (never a scored empty answer), or one ``error:`` line before any work.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from evalsuite.backends.base import BackendOptions, GenerateRequest, RequestFailure
from evalsuite.backends.endpoints import CallFailed, EndpointPool, PoolSettings, _retry_after
from evalsuite.backends.openai_api import OpenAIBackend
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Message
from tests.conftest import evalsuite
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


def failed_call(stub: StubServer, settings: PoolSettings) -> CallFailed:
    """The ``CallFailed`` of one POST /completions through a one-endpoint pool."""

    async def attempt() -> CallFailed:
        pool = EndpointPool([stub.base_url], settings)
        try:
            await pool.call("POST", "/completions", {})
        except CallFailed as exc:
            return exc
        finally:
            await pool.aclose()
        raise AssertionError("no failure")

    return asyncio.run(attempt())


def _error_lines(stderr: str) -> list[str]:
    """stderr less the progress lines a slow start prints ("loading model ...")."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("loading model")]


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

    with stub.running():
        exc = failed_call(stub, PoolSettings(max_retries=0))
    assert exc.retryable and exc.retry_after == 7 and exc.status == status
    assert exc.reason.endswith(": busy")


def test_a_garbage_http_date_fails_the_sample_not_the_run():
    out, posts = generate_one(Reply(429, {}, {"Retry-After": "Sun, 06 Nov 99999999 08:49:37 GMT"}))
    assert isinstance(out, RequestFailure) and "HTTP 429" in out.reason and "Too Many Requests" in out.reason
    assert len(posts) == 2  # retried once, as told


@pytest.mark.parametrize("reply, reason", [
    (chat(None), "no content (finish_reason stop)"),
    (chat(None, "length", reasoning_content="Let me think..."), "no content after reasoning (raise max_new_tokens)"),
    (chat("", "length", reasoning_content="Let me think..."), "no content after reasoning (raise max_new_tokens)"),
    (chat("\n\n", "stop", reasoning="Let me think..."), "no content after reasoning"),
    (chat([{"type": "thinking", "thinking": "Let me think..."}], "length"), "no content after reasoning (raise max_new_tokens)"),
    (chat(None, "stop", refusal="I can't help with\nthat."), "the model refused: I can't help with that. (finish_reason stop)"),
    (chat(None, "content_filter"), "content filter withheld the completion"),
    (chat("The answer is", "content_filter"), "content filter withheld the completion"),
    (chat(None, "tool_calls", tool_calls=[{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
     "called a tool instead of answering"),
    (chat("Sure,", "stop", tool_calls=[{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
     "called a tool instead of answering"),
    ({**chat("yes"), "choices": [{**chat("yes")["choices"][0], "index": 0}, {**chat("no")["choices"][0], "index": 1}]},
     "returned 2 completions for n=1"),
])
def test_a_choice_without_an_answer_is_a_generation_error_not_an_empty_completion(reply, reason):
    out, posts = generate_one(Reply(body=reply))
    assert isinstance(out, RequestFailure) and reason in out.reason
    assert len(posts) == 1  # the server would answer the same again: no retry


@pytest.mark.parametrize("reply", [
    {"object": "chat.completion"}, {**chat("yes"), "choices": []}, {**chat("yes"), "choices": None},
    {**chat("yes"), "choices": ["yes"]}, {**chat("yes"), "choices": [{"index": 0, "message": None}]},
    chat("half an answer", "abort"), [1, 2], "yes",
])
def test_a_reply_without_usable_choices_is_retried_then_a_generation_error(reply):
    out, posts = generate_one(Reply(body=reply))
    assert isinstance(out, RequestFailure) and "malformed reply" in out.reason and "after 2 attempts" in out.reason
    assert len(posts) == 2


def test_an_error_sent_with_status_200_keeps_the_servers_words():
    out, posts = generate_one(Reply(body={"error": {"message": "Upstream provider\nreturned 502", "code": 502}}))
    assert isinstance(out, RequestFailure) and len(posts) == 2
    assert "an error with status 200: Upstream provider returned 502 (after 2 attempts)" in out.reason


def test_choices_out_of_order_are_put_in_index_order_and_repeated_indices_fail():
    def reply(indices):
        return Reply(body=completion("a", "b", "c") | {
            "choices": [{"index": i, "text": t, "finish_reason": "length"} for i, t in zip(indices, "abc")]})

    out, _ = generate_one(reply([2, 0, 1]), prompt="x", n=3, temperature=1.0, seed=1)
    assert out.completions == ["b", "c", "a"]
    out, posts = generate_one(reply([0, 0, 1]), prompt="x", n=3, temperature=1.0, seed=1)
    assert isinstance(out, RequestFailure) and "indices [0, 0, 1] for n=3" in out.reason and len(posts) == 1


def test_content_parts_reasoning_and_missing_usage_still_give_the_answer():
    parts = chat([{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Yes"}, {"type": "text", "text": "."}])
    out, _ = generate_one(Reply(body=parts))
    assert out.completions == ["Yes."]
    out, _ = generate_one(Reply(body=chat("Yes", reasoning_content="The user wants yes.")))
    assert out.completions == ["Yes"] and out.finish_reasons == ["stop"]
    for usage in (None, [], "n/a", {"prompt_tokens": "many", "completion_tokens": -1}, {"prompt_tokens": None}):
        reply = completion("Yes") | {"usage": usage}
        out, _ = generate_one(Reply(body=reply), prompt="x")
        assert out.completions == ["Yes"] and (out.prompt_tokens, out.completion_tokens) == (0, 0)
    del reply["usage"]
    out, _ = generate_one(Reply(body=reply), prompt="x")
    assert out.completions == ["Yes"] and (out.prompt_tokens, out.completion_tokens) == (0, 0)


@pytest.mark.parametrize("reply", [
    Reply(body=b"<html><body>Gateway login</body></html>", headers={"Content-Type": "text/html"}),
    Reply(body=b'{"choices": [{"index": 0, "text": "\\xff\\xfe'),
    Reply(body=b'{"choices": [{"index": 0, "text": "\xff\xfe", "finish_reason": "stop"}]}'),
    Reply(body=completion("Yes, that is the whole answer."), cut_after=20),
    Reply(body=b"[" * 100_000 + b"]" * 100_000),  # nested past Python's recursion limit
    Reply(500, body=b'{"error": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
])
def test_a_body_that_is_not_the_api_json_is_retried_then_a_generation_error(reply):
    out, posts = generate_one(reply, prompt="x")
    assert isinstance(out, RequestFailure) and "after 2 attempts" in out.reason and len(posts) == 2
    if reply.cut_after is None:
        assert ("HTTP 500" if reply.status == 500 else "not JSON (") in out.reason
    if b"Gateway" in reply.body:
        assert "not JSON (text/html): '<html><body>Gateway login</body></html>'" in out.reason


@pytest.mark.parametrize("status, attempts", [(400, 1), (401, 1), (403, 1), (404, 1), (422, 1), (408, 2), (429, 2), (500, 2), (503, 2)])
def test_client_errors_are_not_retried_and_server_errors_are(status, attempts):
    out, posts = generate_one(Reply(status, {"error": {"message": "nope"}}), prompt="x")
    assert isinstance(out, RequestFailure) and out.reason.startswith(f"HTTP {status} ") and len(posts) == attempts


def test_stop_strings_beyond_openais_four_and_empty_ones_are_applied_here():
    stops = ["\n\nQ:", "", "Answer", "\n\nQ:", "###", "</s>", "two"]
    out, posts = generate_one(Reply(body=completion("one two three")), prompt="x", stop=stops)
    assert posts[0]["stop"] == ["\n\nQ:", "Answer", "###", "</s>"]  # at most 4, none empty, no repeats
    assert out.completions == ["one "] and out.finish_reasons == ["stop"]  # "two" still cuts, here
    out, posts = generate_one(Reply(body=completion("one two")), prompt="x", stop=[""])
    assert "stop" not in posts[0] and out.completions == ["one two"]


@pytest.mark.parametrize("url, message", [
    ("http://api..example.com/v1", "has no valid host name"), ("http://" + "a" * 64 + ".example.com/v1", "has no valid host name"),
    ("http://host:abc/v1", "not a valid URL"), ("http://host:99999/v1", "not a valid URL"), ("http://host:0/v1", "no valid port"),
    ("http://[::1/v1", "not a valid URL"), ("http:///v1", "has no host"), ("https://", "has no host"),
    ("http://host/v1?api-version=1", "query string"), ("http://host/v1#x", "query string"),
    ("host:8000/v1", "must start with http"), ("ftp://user:hunter2@host/v1", "must start with http"),
    ("http://user:hunter2@host/v1", "recorded in run.json"),
    ("http://host/v1/chat/completions", "names an endpoint: give the API root, without /chat/completions"),
    ("http://host/v1/completions/", "without /completions"),
])
def test_a_malformed_base_url_is_one_error_line_without_the_password(url, message, tmp_path):
    res = evalsuite("run", "--model", "openai:stub", "-M", f"base_url={url}", "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path))
    (line,) = _error_lines(res.stderr)
    assert res.returncode == 2 and line.startswith("error:") and message in line and "hunter2" not in res.stderr, res.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option, message", [
    ("timeout=nan", "finite"), ("requests_per_s=inf", "finite"), ("tokens_per_min=-5", "positive"),
    ("concurrency=2.5", "whole number"), ("concurrency=0", "positive"), ("max_retries=-1", "at least 0"),
    ("drain_after=many", "whole number"), ("timout=5", "did you mean timeout"),
])
def test_bad_pool_options_are_one_error_line_before_any_request(option, message, tmp_path):
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        res = evalsuite("run", "--model", "openai:stub", "-M", f"base_url={stub.base_url}", "-M", option,
                        "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path))
    (line,) = _error_lines(res.stderr)
    assert res.returncode == 2 and line.startswith("error:") and message in line and stub.requests == [], res.stderr


def test_basic_auth_from_openai_base_url_is_sent_but_never_recorded(monkeypatch):
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        host = stub.base_url.removeprefix("http://")
        monkeypatch.setenv("OPENAI_BASE_URL", f"http://evaluator:p%40ss@{host}/")
        b = OpenAIBackend("stub", BackendOptions(extra={"loglikelihood": "off"}))
        try:
            assert dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=2))]))[0].completions == ["x"]
        finally:
            b.close()
    assert {h.get("Authorization") for _, _, h, _ in stub.requests} == {"Basic ZXZhbHVhdG9yOnBAc3M="}  # evaluator:p@ss
    assert "p@ss" not in b.info.model_dump_json() and "p%40ss" not in b.info.model_dump_json()


def test_an_ipv6_base_url_keeps_its_brackets():
    stub = StubServer(lambda *_: Reply(body=completion("fine")), host="::1")
    with stub.running():
        b = backend(stub)
        try:
            out = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=4))]))
        finally:
            b.close()
    assert out[0].completions == ["fine"] and b.info.server.base_urls == [stub.base_url] and "[::1]" in stub.base_url


def test_a_url_given_twice_is_one_endpoint():
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        b = backend(stub, base_url=f"{stub.base_url},{stub.base_url}/, {stub.base_url}")
        b.close()
    assert [e.url for e in b.pool.endpoints] == [stub.base_url]


def test_an_error_page_that_echoes_the_api_key_never_puts_it_in_the_reason(monkeypatch):
    def echo(method, path, body):
        key = next(h for _, p, h, _ in stub.requests if p == path)["Authorization"]
        return Reply(400, {"error": {"message": f"Invalid header 'Authorization: {key}'"}})

    stub = StubServer(echo)
    monkeypatch.setenv("EVAL_KEY", "sk-live-0123456789")
    with stub.running():
        b = backend(stub, api_key_env="EVAL_KEY")
        try:
            out = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=2))]))[0]
        finally:
            b.close()
    assert isinstance(out, RequestFailure) and out.reason.endswith("Invalid header 'Authorization: Bearer ***'")


def test_the_cache_key_follows_every_decoding_parameter_and_nothing_else(tmp_path, monkeypatch):
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    base = {"max_new_tokens": 8, "temperature": 0.0}
    changed = [{"max_new_tokens": 9}, {"stop": ["\n"]}, {"stop": ["\n", "Q:"]}, {"temperature": 0.7, "seed": 1},
               {"temperature": 0.7, "seed": 2}, {"temperature": 0.7, "top_p": 0.5, "seed": 1}, {"temperature": 0.7, "seed": 1, "n": 2}]

    def posts_for(cfgs, prompt="x", **extra):
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "loglikelihood": "off", **extra},
                                                 response_cache=str(tmp_path)))
        try:
            before = len(stub.posts())
            with pytest.MonkeyPatch.context() as m:
                m.setattr(stub, "reply", lambda _m, _p, body: Reply(body=completion(*["x"] * body.get("n", 1))))
                out = dict(b.generate([GenerateRequest(prompt, GenerationConfig(**{**base, **c})) for c in cfgs]))
            assert not any(isinstance(o, RequestFailure) for o in out.values())
            return len(stub.posts()) - before
        finally:
            b.close()

    with stub.running():
        assert posts_for([{}] + changed) == 1 + len(changed)
        assert posts_for([{}] + changed) == 0  # all deterministic (greedy or seeded): all cached
        assert posts_for([{}], prompt="x ") == 1  # one byte of prompt more
        monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
        assert posts_for([{}], base_url=stub.base_url + "/", concurrency="3", timeout="99") == 0  # nothing that changes the answer
        assert posts_for([{"temperature": 0.7}]) == 1 and posts_for([{"temperature": 0.7}]) == 1  # unseeded: never cached
        with sqlite3.connect(tmp_path / "responses.sqlite") as db:  # a stored reply this version cannot read
            db.execute("UPDATE responses SET response = '{\"choices\": 7}'")
        assert posts_for([{}]) == 1 and posts_for([{}]) == 0


@pytest.mark.parametrize("option, message", [
    ("startup_timeout=soon", "startup_timeout must be a number"), ("startup_timeout=-1", "startup_timeout must be positive"),
    ("startup_timeout=nan", "finite"), ("vllm_args=--served-model-name \"x", "not shell words"),
    ("max_model_len=abc", "max_model_len must be a number of tokens"), ("gpu_memory_utilization=1.5", "at most 1"),
    ("gpu_memory_utilization=0", "positive"), ("kv_cache_space=lots", "kv_cache_space must be a whole number"),
    ("enforce_eager=maybe", "enforce_eager must be true or false"), ("data_parallel=0", "at least 1"),
    ("vllm_args=--port 9000", "may not set --port: evalsuite picks a free port"),
    ("vllm_args=--max-num-seqs 8 --dtype=bfloat16", "may not set --dtype: use evalsuite's --dtype"),
    ("vllm_args=--served_model_name other", "may not set --served-model-name"), ("vllm_args=-tp 2", "use -M tensor_parallel_size"),
])
def test_bad_vllm_options_are_one_error_line_before_the_server_starts(option, message, tmp_path):
    # no interpreter to start: an option that slipped through would fail with another message, never start vLLM
    res = evalsuite("run", "--model", "vllm:smollm2-135m", "-M", option, "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path),
                    env={"EVALSUITE_VLLM_PYTHON": str(tmp_path / "no-python")})
    (line,) = _error_lines(res.stderr)
    assert res.returncode == 2 and line.startswith("error:") and message in line and not any(tmp_path.iterdir()), res.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_pool_with_every_endpoint_down_is_one_error_line_naming_each(tmp_path):
    urls = [f"http://127.0.0.1:{_closed_port()}/v1" for _ in range(2)]
    res = evalsuite("run", "--model", "openai:stub", "-M", "base_url=" + ",".join(urls), "--tasks", "bbh", "--limit", "1",
                    "-o", str(tmp_path))
    lines = _error_lines(res.stderr)
    assert res.returncode == 2 and len(lines) == 1, res.stderr  # no "draining" line for a run that never starts
    assert lines[0].startswith("error: cannot reach any of the 2 endpoints: ") and all(u in lines[0] for u in urls)


def test_a_server_that_accepts_but_never_answers_fails_the_start_within_the_health_timeout(monkeypatch):
    from evalsuite.backends import endpoints

    monkeypatch.setattr(endpoints, "HEALTH_TIMEOUT", 0.2)
    with socket.socket() as hung:  # listens, so connections are made, but nothing ever answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/v1"
        with pytest.raises(UserError, match=re.escape(f"cannot reach the server: no reply from {url} within 0.2 s (after 3 attempts)")):
            OpenAIBackend("stub", BackendOptions(extra={"base_url": url, "timeout": "600"}))


@pytest.mark.parametrize("listing, served", [
    ([{"id": "stub", "root": ["/models/a"]}], True), ([{"id": "stub", "root": {"path": "a"}, "owned_by": ["vllm"]}], True),
    ([{"id": ["stub"]}], False), ([{"id": {"name": "stub"}}, "stub", None], False),
])
def test_a_model_listing_with_lists_or_objects_for_names_is_read_not_a_crash(listing, served):
    stub = StubServer(lambda *_: Reply(body=completion("fine")))
    stub.models_reply = Reply(body={"object": "list", "data": listing})
    with stub.running():
        if not served:
            with pytest.raises(UserError, match="model 'stub' is not served at .* \\(it serves: no model\\)"):
                backend(stub)
            return
        b = backend(stub)
        try:
            assert dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=4))]))[0].completions == ["fine"]
        finally:
            b.close()
    assert b.info.server.models_entry == {"id": "stub"}


def test_an_endpoint_serving_another_model_is_named():
    right, wrong = StubServer(lambda *_: Reply(body=completion("x"))), StubServer(lambda *_: Reply(body=completion("x")), ["other"])
    with right.running(), wrong.running():
        with pytest.raises(UserError) as exc:
            backend(right, base_url=f"{right.base_url},{wrong.base_url}")
    assert str(exc.value) == f"model 'stub' is not served at {wrong.base_url} (it serves: other)"


def test_an_endpoint_down_at_start_is_drained_once_and_the_others_serve(capfd):
    live = StubServer(lambda *_: Reply(body=completion("x")))
    down = f"http://127.0.0.1:{_closed_port()}/v1"
    with live.running():
        b = backend(live, base_url=f"{down},{live.base_url}")
        try:
            out = dict(b.generate([GenerateRequest(str(i), GenerationConfig(max_new_tokens=2)) for i in range(6)]))
            dead = b.pool.endpoints[0]
            assert dead.drained and dead.drains == 1 and dead.served == 0 and len(b.pool._watchers) == 1
        finally:
            b.close()
    assert all(o.completions == ["x"] and o.endpoint == live.base_url for o in out.values())
    assert [line for line in capfd.readouterr().err.splitlines() if "draining" in line] == [
        f"evalsuite: draining endpoint {down} (connection to {down} failed: Cannot connect to host "
        f"{down.removeprefix('http://').removesuffix('/v1')} ssl:default [Connect call failed ('127.0.0.1', {down.split(':')[2][:-3]})] "
        "(after 3 attempts))"]


def test_a_server_that_takes_only_max_completion_tokens_gets_it():
    def reply(method, path, body):
        if "max_tokens" in body:  # OpenAI's words for its reasoning models
            return Reply(400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                         "Use 'max_completion_tokens' instead.", "param": "max_tokens"}})
        return Reply(body=chat(f"{body['max_completion_tokens']} tokens"))

    stub = StubServer(reply)
    with stub.running():
        b = backend(stub, concurrency="1")
        try:
            out = dict(b.generate([GenerateRequest(CHAT, GenerationConfig(max_new_tokens=7)) for _ in range(3)]))
        finally:
            b.close()
    assert [out[i].completions for i in range(3)] == [["7 tokens"]] * 3
    assert ["max_tokens" in body for body in stub.posts()] == [True, False, False, False]  # asked once, then remembered


def test_a_400_naming_max_completion_tokens_after_the_switch_fails_the_sample_without_asking_again():
    def reply(method, path, body):
        if "max_tokens" in body:
            return Reply(400, {"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                                         "Use 'max_completion_tokens' instead."}})
        return Reply(400, {"error": {"message": f"max_completion_tokens is too large: {body['max_completion_tokens']}. "
                                     "This model supports at most 100000 completion tokens."}})

    out, posts = generate_one(reply, max_new_tokens=10**6)
    assert isinstance(out, RequestFailure) and "max_completion_tokens is too large" in out.reason
    assert ["max_tokens" in body for body in posts] == [True, False]  # switched once, then the 400 is the answer


@pytest.fixture(scope="module")
def bos_tokenizer(tmp_path_factory):
    """SmolLM2's tokenizer made to add a BOS, with a chat template that writes one too (as Llama's do)."""
    from evalsuite.backends.models import resolve_model

    folder, source = tmp_path_factory.mktemp("bos-tokenizer"), Path(resolve_model("smollm2-135m").loadable)
    tok = json.loads((source / "tokenizer.json").read_text())
    bos = {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}
    tok["post_processor"] = {"type": "TemplateProcessing", "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]}}}
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.model
def test_a_prompt_rendered_here_reaches_a_server_that_adds_bos_with_one_bos(bos_tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bos_tokenizer)
    prompt = [Message(role="user", content="2+2?"), Message(role="assistant", content="A: Let's think step by step.")]
    rendered = tok.apply_chat_template([m.model_dump() for m in prompt], tokenize=False, continue_final_message=True)
    assert tok(rendered)["input_ids"][:2] == [1, 1]  # what sending the rendered text as it is would give
    stub = StubServer(lambda *_: Reply(body=completion(" 4")))
    with stub.running():
        b = backend(stub, prefill="completions", tokenizer=str(bos_tokenizer))
        try:
            out = dict(b.generate([GenerateRequest(prompt, GenerationConfig(max_new_tokens=4))]))[0]
        finally:
            b.close()
    (sent,) = stub.posts("/v1/completions")
    assert out.completions == [" 4"] and "add_special_tokens" not in sent
    assert tok(sent["prompt"])["input_ids"] == tok(rendered, add_special_tokens=False)["input_ids"]  # one BOS, as the template says


def test_a_huge_reply_is_refused_as_it_arrives_without_a_retry():
    huge = completion("x" * 300_000)  # 0.3 MB against a 0.25 MB limit
    stub = StubServer(lambda *_: Reply(body=huge))

    with stub.running():
        exc = failed_call(stub, PoolSettings(max_reply_bytes=250_000))
        assert not exc.retryable and "larger than 250,000 bytes" in exc.reason and len(stub.posts()) == 1
        out, _ = generate_one(Reply(body=huge), prompt="x")  # within the default limit: an answer
        assert out.completions == ["x" * 300_000]


@pytest.mark.parametrize("name, message", [
    ("{tmp}", "Couldn't instantiate the backend tokenizer"), ("/no/such/folder", "no such folder"),
    ("{tmp}/tokenizer_config.json", "cannot load tokenizer"),
])
def test_a_tokenizer_that_cannot_be_loaded_is_one_error_line(name, message, tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        res = evalsuite("run", "--model", "openai:stub", "-M", f"base_url={stub.base_url}", "-M", f"tokenizer={name.format(tmp=tmp_path)}",
                        "--tasks", "bbh", "--limit", "1", "-o", str(tmp_path / "out"))
    (line,) = _error_lines(res.stderr)
    assert res.returncode == 2 and line.startswith("error: cannot load tokenizer") and message in line, res.stderr


def test_a_request_rate_below_one_per_second_is_a_rate_not_a_crash():
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        b = backend(stub, requests_per_s="0.5")
        try:
            out = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=2))]))
        finally:
            b.close()
    assert out[0].completions == ["x"] and b.pool._rps.max_rate == 1 and b.pool._rps.time_period == 2


def test_a_lone_surrogate_in_a_prompt_or_a_reply_is_cached_and_read_back_exactly(tmp_path):
    # "\\ud83d" is half an emoji: what a server (or a data file) that cuts UTF-16 text sends
    stub = StubServer(lambda *_: Reply(body=b'{"choices": [{"index": 0, "text": "ok \\ud83d", "finish_reason": "stop"}]}'))
    reqs = [GenerateRequest(json.loads('"half \\ud83d"'), GenerationConfig(max_new_tokens=8))]
    with stub.running():
        runs = []
        for _ in range(2):
            b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "loglikelihood": "off"}, response_cache=str(tmp_path)))
            try:
                runs.append(dict(b.generate(reqs))[0])
            finally:
                b.close()
    assert [r.cached for r in runs] == [False, True] and runs[0].completions == runs[1].completions
    assert runs[0].completions[0].startswith("ok ")
    assert len(stub.posts()) == 1


GENERATED = {"token_logprobs": [-0.5]}


@pytest.mark.parametrize("generated, echoed, why", [
    (None, None, "the server returns no log-probabilities (logprobs on /completions)"),
    ({"content": [{"token": " Paris", "logprob": -0.5, "top_logprobs": []}]}, None, "not in the /completions format"),  # chat's
    ({"token_logprobs": ["-0.5"]}, None, "not in the /completions format"),
    (GENERATED, {"token_logprobs": [None, -0.5], "text_offset": [0, 24]}, "not in the /completions format"),  # no tokens
    (GENERATED, {"tokens": ["The", " Paris"], "token_logprobs": [None, -0.5], "text_offset": [0]}, "not in the /completions format"),
])
def test_a_server_without_completions_logprobs_cannot_score_and_says_why_at_once(generated, echoed, why):
    def reply(method, path, body):
        logprobs = echoed if body.get("echo") else generated
        return Reply(body={"choices": [{"index": 0, "text": " Paris", "finish_reason": "length", "logprobs": logprobs}]})

    stub = StubServer(reply, owned_by="vllm")
    with stub.running():
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url}))
        b.close()
        assert "loglikelihood" not in b.capabilities and why in b.info.server.loglikelihood
        assert len(stub.posts("/v1/completions")) == 1 + (echoed is not None)  # the server answers so every time: not retried
        with pytest.raises(UserError, match="loglikelihood=on, but the server cannot score: .*" + re.escape(why)):
            OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "loglikelihood": "on"}))


def test_the_same_model_name_on_another_kind_of_server_is_another_cache_entry(tmp_path):
    first, other = StubServer(lambda *_: Reply(body=completion("a"))), StubServer(lambda *_: Reply(body=completion("b")), owned_by="llamacpp")
    with first.running(), other.running():
        outs = []
        for stub in (first, other, first):
            b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "loglikelihood": "off"}, response_cache=str(tmp_path)))
            try:
                outs.append(dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=2))]))[0])
            finally:
                b.close()
    assert [(o.completions, o.cached) for o in outs] == [(["a"], False), (["b"], False), (["a"], True)]


def test_every_decoding_parameter_reaches_the_server():
    cfg = {"max_new_tokens": 17, "temperature": 0.6, "top_p": 0.9, "n": 2, "seed": 11, "stop": ["\n"]}
    out, (text,) = generate_one(Reply(body=completion("a", "b")), prompt="x", **cfg)
    _, (chat_body,) = generate_one(lambda *_: Reply(body=completion("a", "b") | {
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "length"} for i, t in enumerate("ab")]}),
        **cfg)
    sent = {"max_tokens": 17, "temperature": 0.6, "top_p": 0.9, "n": 2, "seed": 11, "stop": ["\n"], "model": "stub"}
    assert text == {**sent, "prompt": "x"} and out.completions == ["a", "b"]
    assert chat_body == {**sent, "messages": [{"role": "user", "content": "Say yes."}]}
    _, (greedy,) = generate_one(Reply(body=completion("a")), prompt="x")
    assert greedy == {"model": "stub", "prompt": "x", "max_tokens": 8, "temperature": 0.0}  # no top_p, n or seed to mislead


def test_a_redirect_is_not_followed_and_names_where_it_points():
    target = StubServer(lambda *_: Reply(body=completion("x")))
    with target.running():
        moved = StubServer(lambda m, p, b: Reply(301, b"", {"Location": target.base_url.replace("/v1", "") + p}))
        with moved.running():
            b = backend(target)  # a pool call on a URL that starts to redirect mid-run
            b.pool.endpoints[0].url = moved.base_url
            try:
                out = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=2))]))[0]
            finally:
                b.close()
            assert isinstance(out, RequestFailure) and out.reason == (
                f"HTTP 301 from {moved.base_url}/completions: redirected to {target.base_url}/completions (give that URL as base_url)")
            assert target.posts() == [] and len(moved.posts()) == 1  # neither followed as a GET nor retried
            moved.models_reply = Reply(308, b"", {"Location": target.base_url + "/models"})
            with pytest.raises(UserError, match=f"HTTP 308 from {moved.base_url}/models: redirected to {target.base_url}/models"):
                backend(moved)


@pytest.mark.parametrize("key, sent", [("sk-secret123\n", "Bearer sk-secret123"), ("  sk-secret123\r\n", "Bearer sk-secret123"),
                                       ("sk-sécret", None), ("sk-a\nb", None), ("   ", "")])
def test_an_api_key_from_a_file_is_trimmed_and_one_no_header_can_carry_is_refused(key, sent, monkeypatch):
    monkeypatch.setenv("EVAL_KEY", key)
    stub = StubServer(lambda *_: Reply(body=completion("x")))
    with stub.running():
        if sent is None:
            with pytest.raises(UserError, match=r"\$EVAL_KEY holds a space, control or non-ASCII character") as exc:
                backend(stub, api_key_env="EVAL_KEY")
            assert "sk-" not in str(exc.value) and stub.requests == []
            return
        backend(stub, api_key_env="EVAL_KEY").close()
    assert {h.get("Authorization", "") for _, _, h, _ in stub.requests} == {sent}


def vllm_like(score: float = -0.5, tokenize: dict | None = None, top: bool = True):
    """A vLLM-like server's replies: it passes the log-likelihood probe, tokenizes a
    word a token (or answers /tokenize with ``tokenize[0]`` once set) and scores every
    prompt token at ``score`` (with ``top_logprobs`` unless ``top`` is false).  Returns
    (reply, tokenize): set ``tokenize[0]`` to change it."""
    from evalsuite.backends.openai_api import PROBE_TEXT

    words = (PROBE_TEXT + " Paris").split(" ")
    tokens = [words[0]] + [" " + w for w in words[1:]]
    offsets = [sum(map(len, tokens[:k])) for k in range(len(tokens))]
    override = [tokenize]

    def reply(method, path, body):
        if path == "/version":
            return Reply(body={"version": "0.32.0"})
        if path == "/tokenize":
            if override[0] is not None:
                return Reply(body=override[0])
            return Reply(body={"tokens": list(range(len(body["prompt"].split(" ")))) if "prompt" in body else [7, 8, 9]})
        if path == "/detokenize":
            return Reply(body={"prompt": "user: 2+2?\nassistant:"})
        if isinstance(body["prompt"], list):  # scoring: token ids, one choice per prompt
            return Reply(body={"choices": [{"index": i, "text": "", "finish_reason": "length", "logprobs": {
                "token_logprobs": [None] + [score] * (len(ids) - 1),
                "top_logprobs": [None] + [{"x": score}] * (len(ids) - 1) if top else None}}
                for i, ids in enumerate(body["prompt"])]})
        lp = {"tokens": tokens, "token_logprobs": [None] + [-1.0] * (len(tokens) - 1), "text_offset": offsets, "top_logprobs": None}
        return Reply(body={"choices": [{"index": 0, "text": " Paris", "finish_reason": "length",
                                        "logprobs": lp if body.get("echo") else {"token_logprobs": [-1.0]}}]})

    return reply, override


def test_server_tokenization_scores_and_a_tokenize_reply_without_ids_fails_the_sample_not_the_run():
    """A vLLM-like stub scores a chat context through /tokenize and /detokenize, then
    answers /tokenize with something else."""
    from evalsuite.backends.base import ChoiceRequest

    reply, tokenize = vllm_like()
    stub = StubServer(reply)
    with stub.running():
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "max_retries": "1"}))
        try:
            assert b.info.server.loglikelihood == "on"
            chat_context = [Message(role="user", content="2+2?")]
            (scored,) = dict(b.loglikelihood([ChoiceRequest(chat_context, [" 4", " 5"])])).values()
            assert scored.logprobs == [-0.5, -0.5] and scored.is_greedy == [True, True]  # one word past the rendered context
            for garbage in ({"count": 3}, {"tokens": "1 2 3"}, {"tokens": [1, "2"]}):
                tokenize[0] = garbage
                (out,) = dict(b.loglikelihood([ChoiceRequest("Q: 2+2? A:", [" 4"])])).values()
                assert isinstance(out, RequestFailure) and out.reason.startswith("tokenizing: malformed reply from ")
        finally:
            b.close()


@pytest.mark.parametrize("server, reason, posts", [
    ({"score": float("nan")}, "a log-probability that is no number: [nan]", 2),  # retried, then never scored
    ({"score": float("inf")}, "a log-probability that is no number: [inf]", 2),
    ({"top": False}, "no top_logprobs for the echoed prompt: is_greedy cannot be computed", 1),  # never guessed, not retried
])
def test_scores_a_server_cannot_back_fail_the_sample_and_are_never_scored(server, reason, posts):
    from evalsuite.backends.base import ChoiceRequest

    reply, _ = vllm_like(**server)
    stub = StubServer(reply)
    with stub.running():
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": stub.base_url, "max_retries": "1"}))
        try:
            (out,) = dict(b.loglikelihood([ChoiceRequest("Q: 2+2? A:", [" 4"])])).values()
        finally:
            b.close()
    assert isinstance(out, RequestFailure) and reason in out.reason
    assert sum(isinstance(p.get("prompt"), list) for p in stub.posts("/v1/completions")) == posts


@pytest.mark.parametrize("busy", [Reply(429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "0"}),
                                  Reply(429, b"Too Many Requests", headers={"Content-Type": "text/plain"}),
                                  Reply(503, {"message": "overloaded"}),
                                  Reply(404, {"error": {"message": "The model `stub` does not exist.", "code": 404}})])  # restarted
def test_a_retry_goes_to_another_endpoint_than_the_one_that_failed(busy, capfd):
    # A busy endpoint answers at once, so it always has the fewest requests in flight: retries must not all go to it.
    bad, good = StubServer(lambda *_: busy), StubServer(lambda *_: Reply(body=completion("fine")))
    with bad.running(), good.running():
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": f"{bad.base_url},{good.base_url}", "loglikelihood": "off",
                                                        "max_retries": "2", "concurrency": "1"}))
        try:
            out = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=4)) for _ in range(6)]))
        finally:
            b.close()
    assert [out[i].completions for i in range(6)] == [["fine"]] * 6 and len(good.posts()) == 6
    assert len(bad.posts()) <= 3 and f"draining endpoint {bad.base_url}" in capfd.readouterr().err  # drained after 3 failures


def test_a_pool_that_fails_everywhere_keeps_its_last_endpoint_and_names_the_servers_error(capfd):
    busy = [StubServer(lambda *_: Reply(503, {"message": "overloaded"}, headers={"Retry-After": "0"})) for _ in range(2)]
    with busy[0].running(), busy[1].running():
        b = OpenAIBackend("stub", BackendOptions(extra={"base_url": ",".join(s.base_url for s in busy), "loglikelihood": "off",
                                                        "max_retries": "3", "drain_after": "1"}))
        try:
            (out,) = dict(b.generate([GenerateRequest("x", GenerationConfig(max_new_tokens=4))])).values()
        finally:
            b.close()
    assert isinstance(out, RequestFailure) and "HTTP 503" in out.reason and "overloaded (after 4 attempts)" in out.reason
    assert not all(e.drained for e in b.pool.endpoints)
    assert "/v1//version" not in capfd.readouterr().err  # vLLM's /version is at the server root


def test_a_drained_endpoint_is_readmitted_once_its_health_check_passes():
    down = {"now": True}
    flaky = StubServer(lambda *_: Reply(500, {"error": {"message": "down"}}) if down["now"] else Reply(body=completion("flaky")))
    flaky.models_reply = Reply(503, {"error": {"message": "down"}})
    good = StubServer(lambda *_: Reply(body=completion("good")))

    async def scenario() -> list[str]:
        pool = EndpointPool([flaky.base_url, good.base_url], PoolSettings(drain_after=1, health_interval=0.05, max_retries=2))
        try:
            first, _ = await pool.call("POST", "/completions", {})  # the flaky one fails, is drained, the good one answers
            assert pool.endpoints[0].drained
            down["now"], flaky.models_reply = False, None
            for _ in range(400):  # the watcher's health check readmits it (every 0.05 s here)
                if not pool.endpoints[0].drained:
                    break
                await asyncio.sleep(0.05)
            second, _ = await pool.call("POST", "/completions", {})
            return [first["choices"][0]["text"], second["choices"][0]["text"], pool.endpoints[0].drains]
        finally:
            await pool.aclose()

    with flaky.running(), good.running():
        assert asyncio.run(scenario()) == ["good", "flaky", 1]


def test_an_exhausted_quota_is_not_retried_like_a_rate_limit():
    quota = {"error": {"message": "You exceeded your current quota, please check your plan and billing details.",
                       "type": "insufficient_quota", "code": "insufficient_quota"}}
    out, posts = generate_one(Reply(429, quota), prompt="x")
    assert isinstance(out, RequestFailure) and "You exceeded your current quota" in out.reason and len(posts) == 1
    out, posts = generate_one(Reply(429, {"error": {"message": "Rate limit reached for requests", "code": "rate_limit_exceeded"}}), prompt="x")
    assert isinstance(out, RequestFailure) and len(posts) == 2
