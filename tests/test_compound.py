"""Compound requests: multi-turn conversations and multi-prompt requests over a plain backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from evalsuite.backends.base import Backend, BackendOptions, GenerateRequest
from evalsuite.compound import ConversationRequest, MultiRequest, extend, run_requests, script_of
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Message, ModelInfo, ModelOutput

CONFIG = GenerationConfig(max_new_tokens=8)


class Echo(Backend):
    """Answers 'A(<last user message>)' and records every batch it was sent."""

    name = "echo"

    def __init__(self, model: str = "echo", options: BackendOptions | None = None) -> None:
        self.info = ModelInfo(id=model, backend=self.name, chat_template=True)
        self.batches: list[list[GenerateRequest]] = []

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput]]:
        self.batches.append(list(requests))
        for i, r in enumerate(requests):
            last = r.prompt if isinstance(r.prompt, str) else [m.content for m in r.prompt if m.role == "user"][-1]
            yield i, ModelOutput(completions=[f"A({last[-12:]})"], prompt_tokens=3, completion_tokens=2)


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def test_turn_two_sees_the_models_own_turn_one_answer():
    backend = Echo()
    convs = [ConversationRequest(user(f"q1-{i}"), (f"q2-{i}",), CONFIG) for i in range(3)]
    results = dict(run_requests(backend, convs))
    assert len(backend.batches) == 2  # one batched call per turn
    second = backend.batches[1][0].prompt
    assert [(m.role, m.content) for m in second] == [("user", "q1-0"), ("assistant", "A(q1-0)"), ("user", "q2-0")]
    out = results[0]
    assert [p.completions[0] for p in out.parts] == ["A(q1-0)", "A(q2-0)"]
    assert out.completions == ["A(q2-0)"] and out.completion_tokens == 4


def test_multi_requests_keep_their_parts_in_order_among_plain_requests():
    backend = Echo()
    requests = [GenerateRequest("plain", CONFIG),
                MultiRequest((GenerateRequest("first", CONFIG), GenerateRequest("second", CONFIG))),
                MultiRequest((ConversationRequest(user("c1"), ("c2",), CONFIG), GenerateRequest("x", CONFIG)))]
    results = dict(run_requests(backend, requests))
    assert results[0].completions == ["A(plain)"]
    assert [p.completions[0] for p in results[1].parts] == ["A(first)", "A(second)"]
    assert [p.completions[0] for p in results[2].parts] == ["A(c2)", "A(x)"]
    assert [p.completions[0] for p in results[2].parts[0].parts] == ["A(c1)", "A(c2)"]


def test_text_prompts_and_prefilled_turns_extend_naturally():
    assert extend("Q: hi\nA:", " hello", "Q: more") == "Q: hi\nA: hello\n\nQ: more"
    prefilled = [*user("q"), Message(role="assistant", content="Answer:")]
    grown = extend(prefilled, " 42", "why?")
    assert [(m.role, m.content) for m in grown] == [("user", "q"), ("assistant", "Answer: 42"), ("user", "why?")]


def test_recorded_script_holds_no_model_text():
    conv = ConversationRequest(user("q1"), ("q2",), CONFIG)
    assert [m.content for m in script_of(conv)] == ["q1", "q2"]
    multi = MultiRequest((GenerateRequest("a", CONFIG), GenerateRequest("b", CONFIG)))
    assert script_of(multi) == ["a", "b"]


def test_a_conversation_has_one_completion_per_turn():
    with pytest.raises(UserError, match="one completion per turn"):
        ConversationRequest(user("q"), ("q2",), CONFIG.model_copy(update={"n": 2}))


class Failure:
    """What an HTTP backend yields for a request that failed after its retries."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Flaky(Echo):
    """Echo, except that prompts containing 'bad' fail on their own."""

    def generate(self, requests):
        for i, output in super().generate(requests):
            text = requests[i].prompt if isinstance(requests[i].prompt, str) else requests[i].prompt[-1].content
            yield i, Failure(f"HTTP 503 for {text}") if "bad" in text else output


def test_a_failed_turn_or_part_fails_its_compound_request_only():
    backend = Flaky()
    requests = [ConversationRequest(user("q1"), ("bad q2",), CONFIG), ConversationRequest(user("bad"), ("q2",), CONFIG),
                MultiRequest((GenerateRequest("ok", CONFIG), GenerateRequest("bad", CONFIG))),
                ConversationRequest(user("fine"), ("also fine",), CONFIG)]
    results = dict(run_requests(backend, requests))
    assert isinstance(results[0], Failure) and isinstance(results[1], Failure) and isinstance(results[2], Failure)
    assert results[3].completions == ["A(also fine)"]
    assert sum(len(b) for b in backend.batches) == 2 + 3 + 2  # conversation 1 never sent its second turn
