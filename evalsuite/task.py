"""What a task is: a frozen spec built by a small decorated factory.

A task module defines one function decorated with :func:`task`; its keyword
parameters are the task's variants (``evalsuite run -T shots=0``).  The
factory receives a :class:`TaskContext` with run-level settings and returns a
:class:`Task`: samples, a request builder, a scorer and an aggregator.
"""

from __future__ import annotations

import inspect
import math
import random
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union

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

    def __post_init__(self) -> None:
        # (task, sample_id) keys resume, rescoring and the gate's pairing: a repeated
        # id would silently keep one of its samples and drop the others.
        seen: set[str] = set()
        repeated = list(dict.fromkeys(s.id for s in self.samples if s.id in seen or seen.add(s.id)))
        if repeated:
            raise UserError(f"task {self.name}: {len(repeated)} sample ids occur more than once "
                            f"(e.g. {', '.join(repeated[:3])}); ids must be unique within a task")


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
        hints = typing.get_type_hints(self.fn, include_extras=True)  # keep Annotated bounds
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise unknown_name(f"parameter of task '{self.name}'", key, known)
            out[key] = coerce(value, hints.get(key, str), f"{self.name}.{key}")
        return out


def task(description: str, variants: dict[str, str] | None = None, judged: bool = False) -> Callable[..., TaskFactory]:
    """Declare a task factory: ``@task("BIG-Bench Hard", variants={...})``.

    ``judged=True``: the task's scorer asks an LLM judge (``ctx.judge``), so
    ``evalsuite run`` requires ``--judge MODEL`` before loading anything.
    """

    def wrap(fn: Callable[..., Task]) -> TaskFactory:
        return TaskFactory(fn, fn.__name__, description, variants or {}, judged)

    return wrap


@dataclass(frozen=True)
class Bound:
    """A numeric parameter's allowed range, checked with its CLI value:
    ``timeout_s: Annotated[float, Bound(gt=0)]`` (see :data:`PositiveFloat` etc.)."""

    gt: float | None = None  # exclusive minimum
    ge: float | None = None  # inclusive minimum
    le: float | None = None  # inclusive maximum

    def check(self, number: float, where: str) -> None:
        ok = ((self.gt is None or number > self.gt) and (self.ge is None or number >= self.ge)
              and (self.le is None or number <= self.le))
        if not ok:
            raise UserError(f"{where} must be {self.describe()}, got {number:g}")

    def describe(self) -> str:
        low = f"> {self.gt:g}" if self.gt is not None else f">= {self.ge:g}" if self.ge is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else ""
        return " and ".join(p for p in (low, high) if p) or "a number"


# Annotated numeric task parameters: the bound is checked when the value is
# coerced, i.e. before a model loads or a sandbox starts.
PositiveInt = Annotated[int, Bound(ge=1)]
NonNegativeInt = Annotated[int, Bound(ge=0)]
PositiveFloat = Annotated[float, Bound(gt=0)]
NonNegativeFloat = Annotated[float, Bound(ge=0)]
Probability = Annotated[float, Bound(gt=0, le=1)]  # top_p: (0, 1]


def coerce(value: Any, hint: Any, where: str) -> Any:
    """A command-line ``value`` as the type ``hint`` (int, float, an annotated
    bound such as :data:`PositiveInt`, a Literal...), as ``-T`` parameters are
    read; ``UserError`` naming ``where`` when it is not one."""
    types = typing.get_args(hint) if typing.get_origin(hint) in (Union, UnionType) else (hint,)
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for t in types:
                if (typing.get_args(t)[0] if typing.get_origin(t) is Annotated else t) in (int, float):
                    return _check_number(value, t, where)
        return value
    if value.lower() in ("none", "null") and type(None) in types:
        return None
    for t in types:
        if typing.get_origin(t) is Annotated:
            base = typing.get_args(t)[0]
            try:
                number = base(value)
            except ValueError:
                continue
            return _check_number(number, t, where)
        try:
            if t is bool:
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                continue
            if t in (int, float):
                return _check_number(t(value), t, where)
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
    raise UserError(f"{where}: cannot interpret '{value}' as {_type_name(hint)}")


def _check_number(number: int | float, hint: Any, where: str) -> int | float:
    """A coerced number: finite (``nan``/``inf`` parse as floats but mean nothing
    as a task setting) and within the hint's :class:`Bound`, if it has one."""
    if isinstance(number, float) and not math.isfinite(number):
        raise UserError(f"{where} must be a finite number, got {number}")
    for bound in typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ():
        if isinstance(bound, Bound):
            bound.check(number, where)
    return number


def _type_name(hint: Any) -> str:
    """``int | None`` rather than ``typing.Annotated[int, Bound(ge=1)] | None`` in messages."""
    if typing.get_origin(hint) in (Union, UnionType):
        return " | ".join(_type_name(t) for t in typing.get_args(hint))
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        bounds = [b.describe() for b in extras if isinstance(b, Bound)]
        return f"{_type_name(base)} ({', '.join(bounds)})" if bounds else _type_name(base)
    if hint is type(None):
        return "None"
    return str(hint).replace("typing.", "") if typing.get_origin(hint) else getattr(hint, "__name__", str(hint))
