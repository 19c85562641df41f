"""The backend protocol: the smallest surface HF, vLLM and HTTP servers share.

A backend turns batches of requests into outputs and yields each result as
soon as it is ready (``(index, output)``), so the runner can persist it.
A backend whose requests fail one by one (an HTTP server after its last
retry) yields ``(index, RequestFailure)`` for those and goes on with the rest.
Generation is mandatory; log-likelihood is an optional capability that a
backend *declares* in ``capabilities`` -- chat-only HTTP APIs do not fake it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, LoglikelihoodResult, ModelInfo, ModelOutput, Prompt

GENERATE = "generate"
LOGLIKELIHOOD = "loglikelihood"


@dataclass(frozen=True)
class GenerateRequest:
    prompt: Prompt
    config: GenerationConfig


@dataclass(frozen=True)
class ChoiceRequest:
    """Score each continuation as a continuation of one shared context."""

    context: Prompt
    continuations: list[str]


@dataclass(frozen=True)
class RequestFailure:
    """One request failed for good; the runner records it as a generation_error."""

    reason: str  # one line, e.g. "HTTP 503 from http://127.0.0.1:8000/v1 after 4 attempts: ..."


@dataclass(frozen=True)
class BackendOptions:
    device: Literal["auto", "cpu", "cuda"] | str = "auto"
    dtype: str = "auto"
    batch_size: int | Literal["auto"] = "auto"
    revision: str | None = None
    # None: use the model's chat template when it has one.
    chat_template: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific -M key=value
    response_cache: str | None = None  # folder of the opt-in response cache (--cache)


class CapabilityError(UserError):
    """The backend cannot do what the task needs (e.g. log-likelihoods)."""


class Backend(abc.ABC):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE})
    # Requests the runner hands over per call (length-sorted inside by local
    # backends); None: a whole task at once, so a backend that spreads work
    # over many replicas never idles them at a chunk boundary.
    request_chunk: ClassVar[int | None] = 256
    # Why a capability the backend could have is off (e.g. a failed server probe).
    capability_notes: ClassVar[dict[str, str]] = {}

    info: ModelInfo

    @abc.abstractmethod
    def __init__(self, model: str, options: BackendOptions) -> None: ...

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput | RequestFailure]]:
        """Yield ``(index into requests, output)`` as results complete."""

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult | RequestFailure]]:
        raise missing_capability(self, LOGLIKELIHOOD)

    @property
    def effective_batch_size(self) -> int | str:
        return "n/a"

    def live_tokens(self) -> tuple[int, int] | None:
        """(prompt tokens, completion tokens) generation has processed so far, counted as they go.

        None (the default) when the backend learns them only as each request
        returns, as a remote server's responses do.  Progress polls this from
        another thread, so tokens/s moves before the first sample finishes.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model and any worker processes."""


def missing_capability(backend: Backend, capability: str) -> CapabilityError:
    note = backend.capability_notes.get(capability)
    return CapabilityError(
        f"backend '{backend.name}' cannot compute {capability}s, which this task variant needs"
        + (f" ({note})" if note else "")
        + f"; use a generative variant or a backend that declares the '{capability}' capability"
    )


def require(backend: Backend, capability: str) -> None:
    if capability not in backend.capabilities:
        raise missing_capability(backend, capability)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def split_continuations(
    tokenize: Callable[[str, bool], list[int]], text: str, special: bool, continuations: Sequence[str]
) -> tuple[list[int], list[list[int]]]:
    """Token ids of a rendered context and of each continuation scored after it.

    ``tokenize(text, add_special_tokens)`` is the model's tokenizer (local, or a
    server's ``/tokenize``).  Trailing spaces of the context move into the
    continuations, so " (A)" tokenises as the model would have produced it
    (lm-eval's convention).  A continuation is the tokens of context +
    continuation past the context's tokens; where the two tokenisations
    disagree at the boundary, the continuation is tokenised on its own.
    Raises ``UserError`` for an empty context or continuation.
    """
    if not continuations:
        raise UserError("a log-likelihood request needs at least one continuation")
    stripped = text.rstrip(" ")
    moved = text[len(stripped) :]
    ctx_ids = tokenize(stripped, special)
    if not ctx_ids:
        raise UserError("log-likelihood needs a non-empty context")
    conts = []
    for cont in continuations:
        whole = tokenize(stripped + moved + cont, special)
        if whole[: len(ctx_ids)] == ctx_ids:
            conts.append(whole[len(ctx_ids) :])
        else:
            conts.append(tokenize(moved + cont, False))
        if not conts[-1]:
            raise UserError(f"empty continuation {cont!r} in a log-likelihood request")
    return ctx_ids, conts


def render_prompt(tokenizer: Any, prompt: Prompt, use_chat: bool = True) -> tuple[str, bool]:
    """A prompt as the model's text, and whether special tokens must still be added.

    Chat prompts go through the Hugging Face ``tokenizer``'s chat template; a
    final assistant message is a prefilled answer start, which the text
    continues (``continue_final_message``) instead of opening a new turn.
    """
    if isinstance(prompt, str):
        return prompt, True
    if not use_chat:
        raise UserError("this prompt is a chat conversation but the chat template is off")
    messages = [m.model_dump() for m in prompt]
    continue_last = messages[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=not continue_last, continue_final_message=continue_last
    )
    return text, False
