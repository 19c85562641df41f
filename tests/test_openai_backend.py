"""The OpenAI-compatible backend against a real vLLM server on the embedded model.

The server (tests/vllm_fixtures.py) serves the same fp32 weights the HF
backend loads, so greedy completions, prompt tokens and log-probabilities
must agree with the HF backend's.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from evalsuite.backends.base import BackendOptions, ChoiceRequest, GenerateRequest, RequestFailure
from evalsuite.backends.openai_api import OpenAIBackend
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Message
from evalsuite.task import TaskContext
from tests.conftest import DATA_DIR, evalsuite
from tests.fault_proxy import FaultProxy, ignore_n, shift_echo
from tests.test_loglikelihood import requests as loglikelihood_requests

pytestmark = pytest.mark.model
BBH_SUBTASKS = ["navigate", "boolean_expressions", "date_understanding", "web_of_lies"]


@pytest.fixture(scope="module")
def hf():
    from evalsuite.backends.hf import HFBackend

    backend = HFBackend("smollm2-135m", BackendOptions(batch_size=4))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def served(vllm_server):
    backend = OpenAIBackend(vllm_server.model, BackendOptions(extra={"base_url": vllm_server.base_url}))
    yield backend
    backend.close()


def generate(backend, prompts, **config):
    cfg = GenerationConfig(**{"max_new_tokens": 24, **config})
    out = dict(backend.generate([GenerateRequest(p, cfg) for p in prompts]))
    return [out[i] for i in range(len(prompts))]


def bbh_requests(chat: bool = True, max_new_tokens: int = 128) -> list[GenerateRequest]:
    """The first chain-of-thought item of four subtasks, as the bbh task builds them."""
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=DATA_DIR, chat=chat), subtasks=BBH_SUBTASKS)
    firsts = {s.subtask: s for s in reversed(task.samples)}
    reqs = [task.request(firsts[name]) for name in BBH_SUBTASKS]
    return [GenerateRequest(r.prompt, r.config.model_copy(update={"max_new_tokens": max_new_tokens})) for r in reqs]


def test_provenance_of_the_served_model(served, vllm_server):
    server = served.info.server
    assert served.info.backend == "openai" and served.info.id == vllm_server.model
    assert server.version and server.version[0].isdigit()  # vLLM's /version
    assert server.models_entry["root"].endswith(tuple("0123456789abcdef")) and server.models_entry["max_model_len"] == 8192
    assert server.prefill == "continue" and server.loglikelihood == "on"


def test_bbh_prompts_reach_the_server_as_the_hf_backend_tokens(served, hf, vllm_server):
    """The prefilled answer cue is continued, not answered in a new turn: the
    server's tokens for the chat request equal the HF backend's, token by token."""
    for req in bbh_requests():
        assert req.prompt[-1].role == "assistant"  # the prefilled "A: Let's think step by step."
        reply = httpx.post(f"{vllm_server.root}/tokenize", json={
            "model": vllm_server.model, "messages": [m.model_dump() for m in req.prompt],
            "add_generation_prompt": False, "continue_final_message": True, "add_special_tokens": False,
        }, timeout=60).json()
        assert reply["tokens"] == hf._encode(req.prompt)


def test_greedy_bbh_completions_equal_the_hf_backend(served, hf):
    reqs = bbh_requests()
    ours = dict(served.generate(reqs))
    theirs = dict(hf.generate(reqs))
    for i, req in enumerate(reqs):
        assert not isinstance(ours[i], RequestFailure), ours[i]
        assert ours[i].completions == theirs[i].completions, BBH_SUBTASKS[i]
        assert ours[i].prompt_tokens == theirs[i].prompt_tokens == len(hf._encode(req.prompt))
        # a stop string cuts both at the same place; HF counts tokens up to it, vLLM all it sampled
        assert ours[i].finish_reasons == theirs[i].finish_reasons


def test_text_and_chat_prompts_without_prefill_equal_the_hf_backend(served, hf):
    prompts = ["The capital of France is", [Message(role="user", content="What is 2+2? Reply with just the number.")]]
    ours, theirs = generate(served, prompts), generate(hf, prompts)
    assert [o.completions for o in ours] == [t.completions for t in theirs]
    assert "4" in ours[1].completions[0] and ours[1].finish_reasons == ["eos"]
    assert ours[0].finish_reasons == ["length"] and ours[0].completion_tokens == 24


def test_stop_strings_cut_exactly(served):
    prompt = "Once upon a time, in a small village near the mountains, there lived an old clockmaker who"
    (free,) = generate(served, [prompt], max_new_tokens=40)
    text = free.completions[0]
    stop = text[12:15]  # may end inside a token
    (cut,) = generate(served, [prompt], max_new_tokens=40, stop=[stop, "never-there"])
    assert cut.completions == [text[: text.find(stop)]]
    assert cut.finish_reasons == ["stop"] and cut.completion_tokens < free.completion_tokens


def test_n_samples_and_seeds(served):
    cfg = dict(temperature=1.0, top_p=0.95, n=3, max_new_tokens=16)
    (a,) = generate(served, ["Once upon a time"], seed=7, **cfg)
    (b,) = generate(served, ["Once upon a time"], seed=7, **cfg)
    (c,) = generate(served, ["Once upon a time"], seed=8, **cfg)
    assert len(a.completions) == 3 and len(set(a.completions)) > 1
    assert a.completions == b.completions  # same seed, same samples
    assert a.completions != c.completions
    assert a.completion_tokens == 48 and a.finish_reasons == ["length"] * 3


def test_loglikelihood_equals_the_hf_backend(served, hf):
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=DATA_DIR, chat=True), variant="mc", subtasks=["navigate", "date_understanding"])
    reqs = loglikelihood_requests() + [task.request(task.samples[0]), task.request(task.samples[-1])]
    ours, theirs = dict(served.loglikelihood(reqs)), dict(hf.loglikelihood(reqs))
    assert sorted(ours) == list(range(len(reqs)))
    for i in range(len(reqs)):
        assert ours[i].token_counts == theirs[i].token_counts
        assert ours[i].logprobs == pytest.approx(theirs[i].logprobs, abs=1e-3)
        assert ours[i].is_greedy == theirs[i].is_greedy


def test_bad_requests_fail_alone_with_one_clear_line(served):
    too_long = "word " * 9000
    reqs = [GenerateRequest(too_long, GenerationConfig(max_new_tokens=4)),
            GenerateRequest("Hello", GenerationConfig(max_new_tokens=10**6)),
            GenerateRequest("The capital of France is", GenerationConfig(max_new_tokens=4))]
    calls = served.pool.calls
    out = dict(served.generate(reqs))
    for i in (0, 1):
        assert isinstance(out[i], RequestFailure)
        assert out[i].reason.startswith(f"HTTP 400 from {served.pool.endpoints[0].url}/completions: ")
        assert "\n" not in out[i].reason
    assert "maximum context length" in out[0].reason
    assert out[2].completions[0].strip()  # the good request is unaffected
    assert served.pool.calls - calls == 3  # a 400 is not retried


def test_unknown_model_and_wrong_url_fail_up_front(vllm_server):
    with pytest.raises(UserError, match=r"model 'nope' is not served at .* \(it serves: HuggingFaceTB/SmolLM2-135M-Instruct\)"):
        OpenAIBackend("nope", BackendOptions(extra={"base_url": vllm_server.base_url}))
    with pytest.raises(UserError, match=r"no OpenAI-compatible API at .*/v2: HTTP 404"):
        OpenAIBackend("", BackendOptions(extra={"base_url": vllm_server.root + "/v2"}))
    with pytest.raises(UserError, match="API key through an environment variable"):
        OpenAIBackend("", BackendOptions(extra={"base_url": vllm_server.base_url, "api_key": "sk-123"}))


def test_cli_errors_are_one_line(vllm_server, tmp_path):
    res = evalsuite("run", "--model", "openai:nope", "-M", f"base_url={vllm_server.base_url}", "--tasks", "bbh",
                    "--limit", "1", "-o", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: model 'nope' is not served at {vllm_server.base_url} "
                                              "(it serves: HuggingFaceTB/SmolLM2-135M-Instruct)"]


def test_api_key_reaches_the_server_but_never_the_run_files(vllm_server, tmp_path):
    secret = "sk-test-must-not-leak-41b7"
    with FaultProxy(vllm_server.root).running() as proxy:
        seen: list[str] = []
        proxy.on_request = lambda headers: seen.append(headers.get("authorization", ""))
        res = evalsuite("run", "--model", f"openai:{vllm_server.model}", "-M", f"base_url={proxy.url}/v1",
                        "-M", "api_key_env=EVALSUITE_TEST_KEY", "--tasks", "bbh", "-T", "variant=fewshot",
                        "-T", "subtasks=navigate", "--limit", "1", "-o", str(tmp_path), env={"EVALSUITE_TEST_KEY": secret})
    assert res.returncode == 0, res.stderr
    assert seen and set(seen) == {f"Bearer {secret}"}
    (run,) = tmp_path.iterdir()
    for f in run.iterdir():
        assert secret not in f.read_text()
    assert secret not in res.stdout + res.stderr


def test_misaligned_echo_logprobs_turn_scoring_off(vllm_server):
    """A server whose echoed log-probabilities sit at the wrong position (llama.cpp)
    is caught by the probe: auto turns scoring off with the reason, on refuses."""
    with FaultProxy(vllm_server.root).running() as proxy:
        proxy.rewrite = shift_echo
        base = {"base_url": f"{proxy.url}/v1"}
        backend = OpenAIBackend(vllm_server.model, BackendOptions(extra=base))
        try:
            assert "loglikelihood" not in backend.capabilities
            assert "wrong position" in backend.info.server.loglikelihood
            with pytest.raises(UserError, match=r"cannot compute loglikelihoods, which .* \(echoed prompt log-probabilities disagree"):
                list(backend.loglikelihood([ChoiceRequest("x", [" y"])]))
        finally:
            backend.close()
        with pytest.raises(UserError, match="loglikelihood=on, but the server cannot score"):
            OpenAIBackend(vllm_server.model, BackendOptions(extra={**base, "loglikelihood": "on"}))
    off = OpenAIBackend(vllm_server.model, BackendOptions(extra={"base_url": vllm_server.base_url, "loglikelihood": "off"}))
    off.close()
    assert off.capabilities == frozenset({"generate"})


def test_a_server_that_ignores_n_fails_the_request_without_retrying(vllm_server):
    with FaultProxy(vllm_server.root).running() as proxy:
        proxy.rewrite = ignore_n
        backend = OpenAIBackend(vllm_server.model, BackendOptions(extra={"base_url": f"{proxy.url}/v1", "loglikelihood": "off"}))
        try:
            calls = backend.pool.calls
            (out,) = generate(backend, ["Once upon a time"], temperature=1.0, n=3, seed=1)
            assert isinstance(out, RequestFailure) and "returned 1 completions for n=3: it does not support n" in out.reason
            assert backend.pool.calls - calls == 1
        finally:
            backend.close()


def test_agieval_loglikelihood_accuracy_equals_the_hf_backend(vllm_server, tmp_path):
    args = ("--tasks", "agieval_en", "-T", "scoring=loglikelihood", "-T", "subsets=aqua-rat,lsat-lr,sat-en", "--limit", "2")
    served = evalsuite("run", "--model", f"openai:{vllm_server.model}", "-M", f"base_url={vllm_server.base_url}",
                       *args, "-o", str(tmp_path / "served"))
    local = evalsuite("run", "--model", "smollm2-135m", *args, "-o", str(tmp_path / "hf"))
    assert served.returncode == 0 and local.returncode == 0, served.stderr + local.stderr
    (a,), (b,) = (tmp_path / "served").iterdir(), (tmp_path / "hf").iterdir()
    res_a, res_b = (json.loads((d / "results.json").read_text())["tasks"]["agieval_en"] for d in (a, b))
    assert res_a["n_samples"] == res_b["n_samples"] == 6
    assert {k: v["value"] for k, v in res_a["metrics"].items()} == {k: v["value"] for k, v in res_b["metrics"].items()}
    for x, y in zip(_samples(a), _samples(b)):
        assert x["loglikelihood"]["logprobs"] == pytest.approx(y["loglikelihood"]["logprobs"], abs=1e-3)


def test_response_cache_second_run_makes_no_server_calls(vllm_server, tmp_path):
    with FaultProxy(vllm_server.root).running() as proxy:
        def run(out: str):
            res = evalsuite("run", "--model", f"openai:{vllm_server.model}", "-M", f"base_url={proxy.url}/v1",
                            "--tasks", "bbh", "-T", "variant=fewshot", "-T", "subtasks=navigate,web_of_lies",
                            "--limit", "2", "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / out))
            assert res.returncode == 0, res.stderr
            (d,) = (tmp_path / out).iterdir()
            return d

        first = run("first")
        posts = proxy.posts
        assert posts >= 4
        second = run("second")
        assert proxy.posts == posts  # no generation, probe or tokenizer call: only the model listing
    a, b = _samples(first), _samples(second)
    assert [r["output"]["completions"] for r in a] == [r["output"]["completions"] for r in b]
    assert not any(r["output"]["cached"] for r in a) and all(r["output"]["cached"] for r in b)
    assert json.loads((first / "results.json").read_text())["tasks"] == json.loads((second / "results.json").read_text())["tasks"]


def test_unseeded_samples_are_never_cached(vllm_server, tmp_path):
    backend = OpenAIBackend(vllm_server.model, BackendOptions(extra={"base_url": vllm_server.base_url},
                                                              response_cache=str(tmp_path)))
    try:
        sampled = dict(temperature=1.0, max_new_tokens=8)
        generate(backend, ["Once upon a time"], **sampled)
        (again,) = generate(backend, ["Once upon a time"], **sampled)
        (seeded,) = generate(backend, ["Once upon a time"], seed=3, **sampled)
        (seeded_again,) = generate(backend, ["Once upon a time"], seed=3, **sampled)
        assert not again.cached and not seeded.cached and seeded_again.cached
        assert seeded_again.completions == seeded.completions
    finally:
        backend.close()


def test_pool_drains_a_failing_endpoint_and_results_do_not_change(vllm_server, served):
    """Three endpoints: one refuses connections, one answers every POST with 503,
    one is healthy.  Requests go around the broken ones; greedy results are the
    single endpoint's."""
    reqs = bbh_requests(max_new_tokens=32)
    single = dict(served.generate(reqs))
    with FaultProxy(vllm_server.root, fault_every=1, faults=("503",), only_posts=True).running() as broken:
        urls = f"http://127.0.0.1:{_closed_port()}/v1,{broken.url}/v1,{vllm_server.base_url}"
        pool = OpenAIBackend(vllm_server.model, BackendOptions(extra={"base_url": urls, "loglikelihood": "off"}))
        try:
            out = dict(pool.generate(reqs * 3))
            dead, failing, healthy = pool.pool.endpoints
            assert dead.drained and failing.drains >= 1 and not healthy.drained
        finally:
            pool.close()
    for i, o in out.items():
        assert not isinstance(o, RequestFailure), o
        assert o.completions == single[i % len(reqs)].completions
        assert o.endpoint == vllm_server.base_url


def _closed_port() -> int:
    from evalsuite.backends.vllm_server import free_port

    return free_port()  # nothing listens there once the probe socket is closed


def _samples(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda r: r["sample_id"])
