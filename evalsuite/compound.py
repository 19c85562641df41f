"""Compound requests: several generations behind one sample, driven turn by turn.

Backends only ever see plain :class:`GenerateRequest` batches.  Two request
kinds are built on top of them here, so every backend supports them:

* :class:`ConversationRequest` -- a multi-turn chat in which each follow-up
  user turn is sent with the model's *own* earlier answers in context
  (MT-Bench's turn 2, the TinyStories judge's grading turn).  All
  conversations of a batch advance one turn at a time, so every turn is one
  batched ``generate`` call.
* :class:`MultiRequest` -- independent prompts answered for one sample (a
  pair judged in both orders).

:func:`run_requests` answers any mix of plain and compound requests and
yields ``(index, ModelOutput)`` like ``Backend.generate``; a compound
request's output keeps one part per turn / prompt in ``ModelOutput.parts``.
A backend may yield a per-request failure object instead of an output (an
HTTP backend after its last retry); a compound request with a failed turn or
part yields that failure, and its conversation goes no further.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Union

from evalsuite.backends.base import Backend, GenerateRequest
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, Message, ModelOutput, Prompt


@dataclass(frozen=True)
class ConversationRequest:
    """A chat of ``1 + len(followups)`` user turns, answered turn by turn.

    ``prompt`` is the first turn as any task builds it (chat messages, or
    text when the chat template is off); each follow-up is the next user
    message, sent after the model's own previous answer.  One completion per
    turn (``config.n`` must be 1: each of n branches would need its own
    conversation).
    """

    prompt: Prompt
    followups: tuple[str, ...]
    config: GenerationConfig

    def __post_init__(self) -> None:
        if self.config.n != 1:
            raise UserError(f"a multi-turn conversation generates one completion per turn, got n={self.config.n}")

    @property
    def script(self) -> Prompt:
        """The model-independent part of the conversation: its system and user
        turns, without the model's answers (what samples.jsonl records and hashes)."""
        if isinstance(self.prompt, str):
            return "\n\n".join([self.prompt, *self.followups])
        return [*self.prompt, *(Message(role="user", content=f) for f in self.followups)]


@dataclass(frozen=True)
class MultiRequest:
    """Independent generations for one sample, e.g. both orders of a pair."""

    parts: tuple[Union[GenerateRequest, ConversationRequest], ...]


CompoundRequest = Union[ConversationRequest, MultiRequest]
AnyGenerate = Union[GenerateRequest, ConversationRequest, MultiRequest]


def extend(prompt: Prompt, answer: str, followup: str) -> Prompt:
    """``prompt`` + the model's ``answer`` + the next user turn.

    Chat prompts grow by an assistant and a user message (a prefilled
    assistant turn is completed, not duplicated); text prompts by the answer
    and a blank line.
    """
    if isinstance(prompt, str):
        return f"{prompt}{answer}\n\n{followup}"
    messages = list(prompt)
    if messages and messages[-1].role == "assistant":  # a prefilled answer start
        messages[-1] = Message(role="assistant", content=messages[-1].content + answer)
    else:
        messages.append(Message(role="assistant", content=answer))
    return [*messages, Message(role="user", content=followup)]


def run_requests(backend: Backend, requests: Sequence[AnyGenerate]) -> Iterator[tuple[int, Any]]:
    """Answer plain and compound generation requests with ``backend``.

    Yields ``(index, ModelOutput)``, or the backend's failure object for a
    request that failed on its own.  Plain requests stream as the backend
    yields them; a conversation yields once its last turn is done.  Raises
    whatever the backend raises (the runner then retries the requests one by
    one to pin the failure).
    """
    plain = [i for i, r in enumerate(requests) if isinstance(r, GenerateRequest)]
    if plain:
        for j, output in backend.generate([requests[i] for i in plain]):
            yield plain[j], output
    conversations = [i for i, r in enumerate(requests) if isinstance(r, ConversationRequest)]
    if conversations:
        for j, output in _converse(backend, [requests[i] for i in conversations]):
            yield conversations[j], output
    multis = [i for i, r in enumerate(requests) if isinstance(r, MultiRequest)]
    if multis:
        flat = [(i, slot, part) for i in multis for slot, part in enumerate(requests[i].parts)]
        outputs: dict[int, list[Any]] = {i: [None] * len(requests[i].parts) for i in multis}
        for k, output in run_requests(backend, [part for _, _, part in flat]):
            i, slot, _ = flat[k]
            outputs[i][slot] = output
            if all(o is not None for o in outputs[i]):
                parts = outputs.pop(i)
                failed = next((p for p in parts if not isinstance(p, ModelOutput)), None)
                yield i, failed if failed is not None else combine(parts, last_only=False)


def _converse(backend: Backend, requests: Sequence[ConversationRequest]) -> Iterator[tuple[int, ModelOutput]]:
    prompts = [r.prompt for r in requests]
    turns: list[list[ModelOutput]] = [[] for _ in requests]
    failed: set[int] = set()
    for turn in range(1 + max(len(r.followups) for r in requests)):
        active = [i for i, r in enumerate(requests) if turn <= len(r.followups) and i not in failed]
        if not active:
            break
        if turn:
            for i in active:
                prompts[i] = extend(prompts[i], turns[i][-1].completions[0], requests[i].followups[turn - 1])
        batch = [GenerateRequest(prompts[i], requests[i].config) for i in active]
        for j, output in backend.generate(batch):
            i = active[j]
            if not isinstance(output, ModelOutput):  # this conversation failed for good
                failed.add(i)
                yield i, output
                continue
            turns[i].append(output)
            if turn == len(requests[i].followups):
                yield i, combine(turns[i], last_only=True)


def combine(parts: list[ModelOutput], last_only: bool) -> ModelOutput:
    """One output for a compound request: texts of the last turn (conversation)
    or the first text of every part (multi-request); tokens summed."""
    texts = parts[-1].completions if last_only else [p.completions[0] if p.completions else "" for p in parts]
    reasons = parts[-1].finish_reasons if last_only else [p.finish_reasons[0] if p.finish_reasons else "" for p in parts]
    return ModelOutput(
        completions=list(texts),
        finish_reasons=list(reasons),
        prompt_tokens=sum(p.prompt_tokens for p in parts),
        completion_tokens=sum(p.completion_tokens for p in parts),
        parts=parts,
    )


def script_of(request: AnyGenerate) -> Prompt | list[Prompt]:
    """What to record as a request's prompt: the prompt, a conversation's
    script, or every part's (a multi-request)."""
    if isinstance(request, GenerateRequest):
        return request.prompt
    if isinstance(request, ConversationRequest):
        return request.script
    return [script_of(p) for p in request.parts]  # type: ignore[misc]
