"""What a task is: a frozen spec built by a small decorated factory.

A task module defines one function decorated with :func:`task`; its keyword
parameters are the task's variants (``evalsuite run -T shots=0``).  The
factory receives a :class:`TaskContext` with run-level settings and returns a
:class:`Task`: samples, a request builder, a scorer and an aggregator.
"""

from __future__ import annotations

import inspect
import random
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Union

from evalsuite.backends.base import ChoiceRequest, GenerateRequest
from evalsuite.compound import ConversationRequest, MultiRequest
from evalsuite.errors import UserError, unknown_name
from evalsuite.records import (
    DatasetInfo,
    GenerationConfig,
    LoglikelihoodResult,
    ModelOutput,
    Sample,
    SampleResult,
    Score,
    TaskResult,
)

if TYPE_CHECKING:
    from evalsuite.judging.judge import Judge


# Compound requests (several generations per sample) are driven by the runner
# through evalsuite.compound; backends only ever see the first two kinds.
Request = Union[GenerateRequest, ChoiceRequest, ConversationRequest, MultiRequest]
Response = Union[ModelOutput, LoglikelihoodResult]


@dataclass(frozen=True)
class TaskContext:
    """Run-level settings every task factory receives."""

    data_dir: Path | None = None
    seed: int = 1234
    chat: bool = False  # build prompts as chat messages for the model's template
    system_message: str | None = None  # Orca-style run-level system prompt
    judge: Judge | None = None  # the --judge handle, for tasks declared with judged=True


class Scorer(typing.Protocol):
    def __call__(self, items: Sequence[tuple[Sample, Response]]) -> Iterator[Score]: ...


Aggregator = Callable[[Sequence[SampleResult]], TaskResult]


@dataclass(frozen=True)
class Task:
    name: str
    version: str
    samples: list[Sample]
    request: Callable[[Sample], Request]
    score: Scorer
    aggregate: Aggregator
    dataset: DatasetInfo
    params: dict[str, Any] = field(default_factory=dict)
    template_hashes: dict[str, str] = field(default_factory=dict)
    generation: GenerationConfig | None = None
    # Scoring is batched this many samples at a time (sandbox, judge); 1 means
    # each sample is scored and written as soon as it is generated.
    score_chunk: int = 1
    notes: dict[str, Any] = field(default_factory=dict)  # counted data quirks etc.
    judge_templates: dict[str, str] = field(default_factory=dict)  # judge prompt name -> sha256


def stratified_order(samples: Sequence[Sample], seed: str | int = 0) -> list[Sample]:
    """Samples grouped by subtask (sorted), each group in a fixed random order.

    ``--limit N`` keeps the first N samples of every subtask, so with this
    order it takes a stratified random subset -- the same one in every run.
    """
    groups: dict[str, list[Sample]] = {}
    for sample in sorted(samples, key=lambda s: s.id):
        groups.setdefault(sample.subtask or "", []).append(sample)
    ordered = []
    for name in sorted(groups):
        group = groups[name]
        random.Random(f"{seed}:{name}").shuffle(group)
        ordered += group
    return ordered


def per_item(fn: Callable[[Sample, Any], Score]) -> Scorer:
    """Adapt a one-sample scoring function to the batched Scorer protocol."""

    def scorer(items: Sequence[tuple[Sample, Response]]) -> Iterator[Score]:
        for sample, response in items:
            yield fn(sample, response)

    return scorer


@dataclass(frozen=True)
class TaskFactory:
    fn: Callable[..., Task]
    name: str
    description: str
    variants: dict[str, str]  # short name -> one-line description
    judged: bool = False  # scored by an LLM judge: needs --judge MODEL

    def __call__(self, ctx: TaskContext, **params: Any) -> Task:
        return self.fn(ctx, **self.coerce(params))

    def parameters(self) -> dict[str, inspect.Parameter]:
        sig = inspect.signature(self.fn)
        return {n: p for n, p in list(sig.parameters.items())[1:]}

    def coerce(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate CLI-supplied ``key=value`` strings against the signature."""
        known = self.parameters()
        hints = typing.get_type_hints(self.fn)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise unknown_name(f"parameter of task '{self.name}'", key, known)
            out[key] = _coerce(value, hints.get(key, str), f"{self.name}.{key}")
        return out


def task(description: str, variants: dict[str, str] | None = None, judged: bool = False) -> Callable[..., TaskFactory]:
    """Declare a task factory: ``@task("BIG-Bench Hard", variants={...})``.

    ``judged=True``: the task's scorer asks an LLM judge (``ctx.judge``), so
    ``evalsuite run`` requires ``--judge MODEL`` before loading anything.
    """

    def wrap(fn: Callable[..., Task]) -> TaskFactory:
        return TaskFactory(fn, fn.__name__, description, variants or {}, judged)

    return wrap


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    types = typing.get_args(hint) if typing.get_origin(hint) in (Union, UnionType) else (hint,)
    if value.lower() in ("none", "null") and type(None) in types:
        return None
    for t in types:
        try:
            if t is bool:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                continue
            if t in (int, float):
                return t(value)
            if typing.get_origin(t) is list or t is list:
                return [v for v in value.split(",") if v]
            if t is str:
                return value
            if typing.get_origin(t) is typing.Literal:
                if value in typing.get_args(t):
                    return value
                raise UserError(f"{where} must be one of {', '.join(map(str, typing.get_args(t)))}, got '{value}'")
        except ValueError:
            continue
    raise UserError(f"{where}: cannot interpret '{value}' as {hint}")
