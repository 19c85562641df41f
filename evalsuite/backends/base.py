"""The backend protocol: the smallest surface HF, vLLM and HTTP servers share.

A backend turns batches of requests into outputs and yields each result as
soon as it is ready (``(index, output)``), so the runner can persist it.
Generation is mandatory; log-likelihood is an optional capability that a
backend *declares* in ``capabilities`` -- chat-only HTTP APIs do not fake it.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
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
class BackendOptions:
    device: Literal["auto", "cpu", "cuda"] | str = "auto"
    dtype: str = "auto"
    batch_size: int | Literal["auto"] = "auto"
    revision: str | None = None
    # None: use the model's chat template when it has one.
    chat_template: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific -M key=value


class CapabilityError(UserError):
    """The backend cannot do what the task needs (e.g. log-likelihoods)."""


class Backend(abc.ABC):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset({GENERATE})
    # Requests the runner hands over per call (length-sorted inside by local
    # backends); None: a whole task at once, so a backend that spreads work
    # over many replicas never idles them at a chunk boundary.
    request_chunk: ClassVar[int | None] = 256

    info: ModelInfo

    @abc.abstractmethod
    def __init__(self, model: str, options: BackendOptions) -> None: ...

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput]]:
        """Yield ``(index into requests, output)`` as results complete."""

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult]]:
        raise missing_capability(self, LOGLIKELIHOOD)

    @property
    def effective_batch_size(self) -> int | str:
        return "n/a"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model and any worker processes."""


def missing_capability(backend: Backend, capability: str) -> CapabilityError:
    return CapabilityError(
        f"backend '{backend.name}' cannot compute {capability}s, which this task variant needs; "
        f"use a generative variant or a backend that declares the '{capability}' capability"
    )


def require(backend: Backend, capability: str) -> None:
    if capability not in backend.capabilities:
        raise missing_capability(backend, capability)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
