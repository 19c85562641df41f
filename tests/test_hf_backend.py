"""The Hugging Face backend on the real embedded model (SmolLM2-135M-Instruct, GGUF)."""

from __future__ import annotations

import copy

import pytest

from evalsuite.backends.base import BackendOptions, GenerateRequest
from evalsuite.backends.hf import HFBackend
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Message

pytestmark = pytest.mark.model

PROMPTS = [
    "The capital of France is",
    "Write a list of three fruits:\n1.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village near the mountains, there lived an old clockmaker who",
]


@pytest.fixture(scope="module")
def model():
    return HFBackend("smollm2-135m", BackendOptions(batch_size=4))


def _gen(model, prompts, **cfg):
    config = GenerationConfig(**{"max_new_tokens": 16, **cfg})
    out = dict(model.generate([GenerateRequest(p, config) for p in prompts]))
    return [out[i] for i in range(len(prompts))]


def test_provenance_of_the_embedded_model(model):
    info = model.info
    assert info.id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info.path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and info.file_hash and len(info.file_hash) == 64
    assert info.dtype == "float32" and info.device == "cpu"
    assert 100e6 < info.parameters < 200e6
    assert info.chat_template and len(info.chat_template_hash) == 64


def test_batched_left_padded_generation_equals_one_by_one(model):
    batched = [o.completions[0] for o in _gen(model, PROMPTS)]
    single = [_gen(model, [p])[0].completions[0] for p in PROMPTS]
    assert batched == single
    assert all(batched)


def test_stop_string_cuts_exactly_and_ends_the_row_early(model):
    (free,) = _gen(model, [PROMPTS[3]], max_new_tokens=40)
    text = free.completions[0]
    stop = text[12:15]  # may end inside a token
    (cut,) = _gen(model, [PROMPTS[3]], max_new_tokens=40, stop=[stop])
    assert cut.completions[0] == text[: text.find(stop)]
    assert cut.finish_reasons == ["stop"]
    assert cut.completion_tokens < free.completion_tokens
    # Other rows of the same batch are unaffected by one row stopping.
    outs = _gen(model, [PROMPTS[3], PROMPTS[0]], max_new_tokens=40, stop=[stop])
    assert outs[0].completions[0] == cut.completions[0]
    assert outs[1].completions[0] == _gen(model, [PROMPTS[0]], max_new_tokens=40, stop=[stop])[0].completions[0]


def test_chat_template_applied_to_messages(model):
    text, special = model.render([Message(role="user", content="Hi")])
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n") and not special
    prefilled, _ = model.render([Message(role="user", content="Hi"), Message(role="assistant", content="A: Let's")])
    assert prefilled.endswith("<|im_start|>assistant\nA: Let's")
    (out,) = _gen(model, [[Message(role="user", content="What is 2+2? Reply with just the number.")]])
    assert "4" in out.completions[0]


def test_chat_template_off_rejects_chat_prompts():
    backend = HFBackend("smollm2-135m", BackendOptions(chat_template=False))
    assert backend.info.chat_template is False
    with pytest.raises(UserError, match="chat template is off"):
        list(backend.generate([GenerateRequest([Message(role="user", content="x")], GenerationConfig())]))


def test_sampling_n_completions_seeded(model):
    cfg = dict(temperature=1.0, top_p=0.95, n=3, max_new_tokens=12)
    a = _gen(model, PROMPTS[:2], seed=7, **cfg)
    b = _gen(model, PROMPTS[:2], seed=7, **cfg)
    c = _gen(model, PROMPTS[:2], seed=8, **cfg)
    assert [o.completions for o in a] == [o.completions for o in b]
    assert all(len(o.completions) == 3 for o in a)
    assert len({t for o in a for t in o.completions}) > 2  # actually sampled
    assert [o.completions for o in a] != [o.completions for o in c]


def test_shared_fewshot_prefix_is_prefilled_once_and_changes_nothing(model, data_dir):
    from evalsuite.task import TaskContext
    from tasks.bbh import bbh

    task = bbh(TaskContext(data_dir=data_dir, chat=True), subtasks=["navigate"])
    config = GenerationConfig(max_new_tokens=12)
    requests = [GenerateRequest(task.request(s).prompt, config) for s in task.samples[:3]]
    before = model.stats["prefix_prefills"]
    cached = dict(model.generate(requests))
    assert model.stats["prefix_prefills"] == before + 1
    encoded = [model._encode(r.prompt) for r in requests]
    plain = model._generate_batch(encoded, config, 0, config.max_new_tokens)
    assert [cached[i].completions for i in range(3)] == [o.completions for o in plain]


# -- continuous batching (evalsuite.backends.hf_engine) ---------------------------------


def _bbh_requests(data_dir, subtasks, per_subtask, **cfg):
    from evalsuite.runner import limit_samples
    from evalsuite.task import TaskContext
    from tasks.bbh import STOPS, bbh

    task = bbh(TaskContext(data_dir=data_dir, chat=True), subtasks=subtasks)
    config = GenerationConfig(**{"max_new_tokens": 40, "stop": STOPS, **cfg})
    return [GenerateRequest(task.request(s).prompt, config) for s in limit_samples(task.samples, per_subtask)]


def _by_engine(model, requests, engine, rows=None):
    saved = model.engine, model.batch_size
    if engine == "static":
        model.engine = None
    if rows is not None:
        model.batch_size = rows
        if model.engine is not None:
            model.engine.max_rows = rows
    try:
        out = dict(model.generate(requests))
    finally:
        model.engine, model.batch_size = saved
        if model.engine is not None:
            model.engine.max_rows = saved[1]
    return [out[i] for i in range(len(requests))]


def test_continuous_batching_equals_static_batches_and_one_by_one(model, data_dir):
    """Rows refilled mid-flight (2 slots for 7 prompts, two sharing a few-shot prefix) change nothing."""
    requests = _bbh_requests(data_dir, ["navigate", "snarks", "word_sorting", "object_counting"], 2)[:7]
    before = dict(model.stats)
    continuous = _by_engine(model, requests, "continuous", rows=2)
    keys = ("prefills", "row_steps", "accepted", "prefix_prefills", "generated", "prefill_tokens")
    stats = {k: model.stats[k] - before.get(k, 0) for k in keys}
    live = model.live_tokens()
    static = _by_engine(model, requests, "static")
    static_live = model.live_tokens()
    single = [_by_engine(model, [r], "static")[0] for r in requests]
    assert [o.model_dump() for o in continuous] == [o.model_dump() for o in static] == [o.model_dump() for o in single]
    assert {r for o in continuous for r in o.finish_reasons} >= {"length"}
    # Every decode row-step produced a kept token (and its accepted drafts): no row ever idled as padding.
    produced = sum(o.completion_tokens + (o.finish_reasons[0] == "eos") for o in continuous)  # + the EOS token
    assert stats["prefills"] == 7  # the first token comes from the prefill
    assert stats["row_steps"] + stats["accepted"] == produced - 7
    assert stats["prefix_prefills"] == 3  # once per subtask with two prompts
    # Live token counts (progress polls them): every generated token, and each prompt token prefilled once.
    prompt_tokens = sum(o.prompt_tokens for o in continuous)
    assert stats["generated"] == produced and stats["prefill_tokens"] < prompt_tokens
    assert static_live[1] - live[1] == produced and 0 < static_live[0] - live[0] <= prompt_tokens


def _speculating(model, requests, draft_tokens, rows=None):
    """(outputs, stats delta) of the continuous engine verifying up to ``draft_tokens`` drafts per row."""
    saved, before = model.engine.draft_tokens, dict(model.stats)
    model.engine.draft_tokens = draft_tokens
    try:
        out = _by_engine(model, requests, "continuous", rows)
    finally:
        model.engine.draft_tokens = saved
    return out, {k: model.stats[k] - before.get(k, 0) for k in ("decode_steps", "drafted", "accepted", "prefix_prefills")}


def test_prompt_lookup_speculation_changes_no_greedy_output(model, data_dir):
    """Drafts verified in the step change no token, whatever ends a row, with rows refilled and prefixes shared.

    Real BBH chain-of-thought prompts (two per subtask share a few-shot
    prefix; word_sorting and dyck restate their input), 3 slots for 8
    prompts, 96 new tokens: rows end by stop string, EOS and the token limit,
    some in the middle of an accepted draft.
    """
    requests = _bbh_requests(data_dir, ["word_sorting", "dyck_languages", "navigate", "date_understanding"], 2,
                             max_new_tokens=96)
    plain, off = _speculating(model, requests, 0, rows=3)
    drafted, on = _speculating(model, requests, 8, rows=3)
    assert [o.model_dump() for o in drafted] == [o.model_dump() for o in plain]
    assert [o.model_dump() for o in plain] == [o.model_dump() for o in _by_engine(model, requests, "static")]
    assert {r for o in plain for r in o.finish_reasons} >= {"stop", "length"}
    assert off["drafted"] == 0 and 0 < on["accepted"] < on["drafted"]  # some drafts kept, some rejected
    assert on["prefix_prefills"] > 0  # drafting rows also attended a shared prefix
    assert on["decode_steps"] < off["decode_steps"]


def test_speculation_near_the_token_limit_and_at_an_eos(model):
    """Drafts never run past max_new_tokens, and a row ending at EOS inside a kept draft ends there."""
    loop = "Repeat after me ten times: red green blue, red green blue, red green blue,"
    for max_new_tokens in (1, 2, 5, 17):
        requests = [GenerateRequest(p, GenerationConfig(max_new_tokens=max_new_tokens)) for p in (loop, *PROMPTS)]
        plain, _ = _speculating(model, requests, 0, rows=2)
        drafted, _ = _speculating(model, requests, 6, rows=2)
        assert [o.model_dump() for o in drafted] == [o.model_dump() for o in plain]
        assert all(o.completion_tokens <= max_new_tokens for o in drafted)
    # The model echoes the message; the draft copies it from the prompt together with the <|im_end|> (EOS)
    # that follows it there, so the row ends inside an accepted draft.
    chat = [GenerateRequest([Message(role="user", content="Repeat exactly: apple, apple, apple.")],
                            GenerationConfig(max_new_tokens=40))]
    plain, _ = _speculating(model, chat, 0)
    drafted, stats = _speculating(model, chat, 6)
    assert drafted[0].model_dump() == plain[0].model_dump() and plain[0].finish_reasons == ["eos"]
    assert stats["accepted"] >= plain[0].completion_tokens - 1  # every token after the first came from a draft


def test_sampled_rows_never_draft(model):
    cfg = GenerationConfig(temperature=1.0, n=2, max_new_tokens=12, seed=5)
    requests = [GenerateRequest(p, cfg) for p in PROMPTS]
    on, stats = _speculating(model, requests, 8)
    off, _ = _speculating(model, requests, 0)
    assert stats["drafted"] == 0 and [o.completions for o in on] == [o.completions for o in off]


def test_ngram_drafter_proposes_what_followed_the_latest_match():
    from evalsuite.backends.hf_engine import NgramDrafter

    d = NgramDrafter([5, 1, 2, 3, 9, 1, 2, 3, 7, 8])
    assert d.propose(4) == []  # "7 8" and "8" never occurred before
    d.extend([1, 2, 3])
    assert d.propose(2) == [7, 8]  # the latest "1 2 3" was followed by 7 8, not the earlier by 9
    assert d.propose(9) == [7, 8, 1, 2, 3] and d.propose(0) == []
    d.extend([4, 2, 3])  # "4 2 3" is new; the latest earlier "2 3" came before 4
    assert d.propose(3) == [4, 2, 3]
    short = NgramDrafter([1, 2, 1], max_ngram=3, min_ngram=1)
    assert short.propose(3) == [2, 1]  # only a 1-gram recurs


def test_continuous_stop_strings_and_eos_match_generate(model):
    (free,) = _gen(model, [PROMPTS[3]], max_new_tokens=40)
    stop = free.completions[0][12:15]
    outs = _by_engine(model, [GenerateRequest(p, GenerationConfig(max_new_tokens=40, stop=[stop])) for p in PROMPTS], "continuous", rows=3)
    ref = _by_engine(model, [GenerateRequest(p, GenerationConfig(max_new_tokens=40, stop=[stop])) for p in PROMPTS], "static")
    assert [o.model_dump() for o in outs] == [o.model_dump() for o in ref]
    assert outs[3].finish_reasons == ["stop"] and outs[3].completions[0] == free.completions[0][: free.completions[0].find(stop)]


def test_seeded_samples_do_not_depend_on_the_batch(model):
    """A seeded prompt samples the same completions alone or among others, in any order."""
    cfg = GenerationConfig(temperature=1.0, top_p=0.9, n=2, max_new_tokens=12, seed=3)
    alone = _by_engine(model, [GenerateRequest(PROMPTS[1], cfg)], "continuous")[0]
    mixed = _by_engine(model, [GenerateRequest(p, cfg) for p in (PROMPTS[0], PROMPTS[2], PROMPTS[1])], "continuous", rows=2)
    assert mixed[2].completions == alone.completions and len(set(alone.completions)) == 2


def test_models_the_engine_cannot_run_fall_back_to_generate(model):
    from types import SimpleNamespace

    from evalsuite.backends.hf_engine import supports

    assert supports(model.model) is None and model.engine is not None
    stub = SimpleNamespace(config=copy.deepcopy(model.model.config), generation_config=model.model.generation_config)
    stub.config.sliding_window = 4096
    assert supports(stub) == "sliding-window attention"
    stub.config.sliding_window = None
    stub.config.layer_types = ["full_attention", "linear_attention"] * 15
    assert "linear_attention" in supports(stub)
    stub.config.layer_types = None
    stub.generation_config = copy.deepcopy(model.model.generation_config)
    stub.generation_config.repetition_penalty = 1.3
    assert supports(stub) == "generation config sets repetition_penalty"
    static = HFBackend("smollm2-135m", BackendOptions(extra={"engine": "static"}))
    assert static.engine is None
    assert _gen(static, PROMPTS[:2]) == _gen(model, PROMPTS[:2])
    with pytest.raises(UserError, match="engine=fast: use auto, continuous or static"):
        HFBackend("smollm2-135m", BackendOptions(extra={"engine": "fast"}))
    with pytest.raises(UserError, match="draft_tokens=-1: expected a whole number >= 0"):
        HFBackend("smollm2-135m", BackendOptions(extra={"draft_tokens": "-1"}))


def test_onednn_linears_pack_in_place_and_change_no_greedy_output(model, data_dir):
    """CPU float32 linears run through oneDNN by default; PyTorch's own kernels (-M linear=aten) give the same text."""
    import torch

    inner = model.model
    assert model.info.linear_kernel == "onednn"
    mlp = inner.model.layers[0].mlp.up_proj
    assert mlp.weight.is_mkldnn and mlp.packed_weight is mlp.weight  # replaced, not duplicated
    assert inner.lm_head.weight is inner.model.embed_tokens.weight and not inner.lm_head.weight.is_mkldnn  # tied
    assert inner.lm_head.packed_weight.is_mkldnn
    aten = HFBackend("smollm2-135m", BackendOptions(extra={"linear": "aten"}))
    assert aten.info.linear_kernel == "aten" and not hasattr(aten.model.lm_head, "packed_weight")
    assert aten.info.parameters == model.info.parameters
    ids = torch.tensor([model.tokenizer("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        ours, theirs = model.model(input_ids=ids).logits, aten.model(input_ids=ids).logits
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-3) and not torch.equal(ours, theirs)
    requests = _bbh_requests(data_dir, ["date_understanding", "navigate", "sports_understanding"], 2, max_new_tokens=64)
    assert _by_engine(model, requests, "continuous") == _by_engine(aten, requests, "continuous")
    with pytest.raises(UserError, match="linear=mkl: use auto, onednn or aten"):
        HFBackend("smollm2-135m", BackendOptions(extra={"linear": "mkl"}))
    with pytest.raises(UserError, match="linear=onednn: needs a float32 model on the CPU"):
        HFBackend("smollm2-135m", BackendOptions(dtype="bfloat16", extra={"linear": "onednn"}))


def test_the_models_context_bounds_every_row_and_a_prompt_that_fills_it_fails(model):
    """A model declaring 48 positions (as GPT-2 declares 1,024): an answer stops at the context's end with
    "length", equal to the start of the unbounded answer, on the engine and on static batches alike; a
    prompt that leaves no room, and a log-likelihood request past the context, are RequestFailures with
    the reason, never a crash nor text from positions the model was not trained for."""
    from evalsuite.backends.base import ChoiceRequest, RequestFailure

    config = GenerationConfig(max_new_tokens=48)
    loop = "Repeat after me ten times: red green blue, red green blue, red green blue,"  # runs to any limit
    long = PROMPTS[3] * 3  # 60 tokens
    requests = [GenerateRequest(p, config) for p in (loop, PROMPTS[0], long)]
    free = _by_engine(model, requests[:2], "continuous")
    lengths = [len(model._encode(p)) for p in (loop, PROMPTS[0], long)]
    config_, saved = model.model.config, (model.model.config.max_position_embeddings, model.engine.draft_tokens)
    config_.max_position_embeddings = 48
    try:
        for engine in ("continuous", "static"):
            for draft_tokens in (0, 4):
                model.engine.draft_tokens = draft_tokens
                bounded = _by_engine(model, requests, engine)
                cut = 0
                for out, unbounded, n in zip(bounded, free, lengths):
                    room = 48 - n
                    assert out.completion_tokens <= room
                    if unbounded.completion_tokens > room:  # cut by the context, not by max_new_tokens
                        assert out.finish_reasons == ["length"] and out.completion_tokens == room
                        assert unbounded.completions[0].startswith(out.completions[0])
                        cut += 1
                    else:
                        assert out.model_dump() == unbounded.model_dump()
                assert cut
                assert isinstance(bounded[2], RequestFailure) and "60 tokens" in bounded[2].reason, bounded[2]
        results = dict(model.loglikelihood([ChoiceRequest(long, [" yes"]), ChoiceRequest(PROMPTS[1], [" apples"])]))
        assert isinstance(results[0], RequestFailure) and "holds 48" in results[0].reason
        assert not isinstance(results[1], RequestFailure)
    finally:
        config_.max_position_embeddings, model.engine.draft_tokens = saved
