"""The judge handle a judged task's scorer calls, and the judgment log behind it.

The runner builds one :class:`Judge` from ``--judge MODEL`` (any model spec,
through :func:`evalsuite.backends.models.load_backend`) and ``-J key=value``,
and hands it to task factories as ``TaskContext.judge``.  A scorer describes
its judge calls as :class:`JudgeCall` values and gets :class:`Judgment`
records back, in order:

* calls are deduplicated and sent as one batch (conversations advance turn by
  turn, see :mod:`evalsuite.compound`), so a local judge batches and a server
  judge sees concurrent requests;
* every finished judgment is appended to ``judgments.jsonl`` in the run
  directory (fsynced) before the scorer returns, keyed by judge + decoding +
  conversation, so a killed run resumes without asking the judge again and
  identical judge prompts are judged once;
* the raw replies are kept and re-parsed on every use, so a parser fix applies
  to cached judgments without new judge calls;
* what it asks and what comes back is told to ``Judge.listener``
  (:class:`JudgeListener`: the run's progress display) as it happens.

A response cache for remote judges belongs in a backend wrapper (any backend
works here); this log is the run's own record of what its judge said.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from evalsuite.backends.base import GENERATE, Backend, BackendOptions, GenerateRequest, require
from evalsuite.backends.models import DEFAULT_MODEL, load_backend
from evalsuite.compound import ConversationRequest, run_requests
from evalsuite.errors import UserError
from evalsuite.judging.verdicts import Parsed, Parser
from evalsuite.records import (
    GenerationConfig,
    JudgeInfo,
    JudgeMode,
    Judgment,
    Message,
    ModelInfo,
    ModelOutput,
    ScoreStatus,
    jsonl_lines,
)
from evalsuite.task import NonNegativeFloat, NonNegativeInt, PositiveInt, Probability, coerce
from evalsuite.templates import sha256_text

LOG_FILE = "judgments.jsonl"
# FastChat's judge decoding (gpt-4, temperature 0, max_tokens 2048).
DEFAULT_JUDGE_CONFIG = GenerationConfig(max_new_tokens=2048, temperature=0.0)
# Checked as -T parameters are: a temperature of nan or -1 or a top_p of 5 is a typo, not a judge.
DECODING_KEYS = {"max_new_tokens": PositiveInt, "temperature": NonNegativeFloat, "top_p": Probability, "seed": int}
BACKEND_KEYS = {"device", "dtype", "batch_size", "revision", "chat_template"}


class JudgeCallFailed(RuntimeError):
    """A judge call failed (not a reply without a verdict): the samples are
    marked scoring_error and judged again on resume."""


@dataclass(frozen=True)
class JudgeCall:
    """One question to the judge.

    ``messages`` is the judge prompt (system + user turns); ``followups`` are
    further user turns, each sent after the judge's previous reply (the
    TinyStories judge assesses first, then grades).  ``material`` is the text
    under judgment (question, answers, references): verdict-like text copied
    from it never counts (:mod:`evalsuite.judging.verdicts`; pairwise calls
    pass a :class:`~evalsuite.judging.verdicts.PairMaterial`).  For pairwise
    calls ``swapped`` says that candidate *b* is shown first; the parser's
    positional verdict is mapped back to ``"a"`` / ``"b"`` / ``"tie"``.
    """

    role: str
    mode: JudgeMode
    template: str
    messages: tuple[Message, ...]
    parser: Parser
    material: Sequence[str] = ()
    followups: tuple[str, ...] = ()
    swapped: bool = False
    answer_chars: tuple[int, ...] = ()

    @property
    def conversation(self) -> list[Any]:
        return [m.model_dump() for m in self.messages] + [{"role": "user", "content": f} for f in self.followups]

    @property
    def prompt_hash(self) -> str:
        return sha256_text(json.dumps(self.conversation, ensure_ascii=False, sort_keys=True))


def canonical(call: JudgeCall, verdict: Any) -> Any:
    """A pairwise positional verdict (first/second/tie) as the candidates' own (a/b/tie)."""
    if call.mode != "pairwise" or verdict is None:
        return verdict
    first, second = ("b", "a") if call.swapped else ("a", "b")
    return {"first": first, "second": second, "tie": "tie"}[verdict]


def make_judgment(
    call: JudgeCall,
    replies: list[str],
    *,
    judge: str = "",
    key: str = "",
    retries: Sequence[list[str]] = (),
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    truncated: bool = False,
) -> Judgment:
    """Parse the judge's last reply into a :class:`Judgment` (parse_error when it
    holds no verdict of the judge's own).  Used for ``--judge`` judges and for
    tasks whose evaluated model is the judge under test.  ``truncated``: the
    reply hit the token limit (said in ``detail`` when there is no verdict)."""
    parsed: Parsed = call.parser(replies[-1] if replies else "", call.material)
    if parsed.verdict is None and truncated:
        parsed = Parsed(None, f"{parsed.detail}; the reply was cut at max_new_tokens", parsed.quoted)
    return Judgment(
        role=call.role,
        mode=call.mode,
        template=call.template,
        prompt_hash=call.prompt_hash,
        key=key,
        judge=judge,
        replies=list(replies),
        status=ScoreStatus.SCORED if parsed.verdict is not None else ScoreStatus.PARSE_ERROR,
        verdict=canonical(call, parsed.verdict),
        detail=parsed.detail,
        swapped=call.swapped,
        answer_chars=list(call.answer_chars),
        retries=[list(r) for r in retries],
        quoted=parsed.quoted,
        truncated=truncated,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def replies_of(output: ModelOutput) -> list[str]:
    """The judge's text per turn of one (possibly multi-turn) judge call."""
    turns = output.parts or [output]
    return [t.completions[0] if t.completions else "" for t in turns]


def cut_short(output: ModelOutput) -> bool:
    """Whether the judge's last reply stopped at the token limit."""
    last = (output.parts or [output])[-1]
    return bool(last.finish_reasons) and last.finish_reasons[0] == "length"


class JudgeListener:
    """What a :class:`Judge` reports as it works, e.g. to a progress display; here, every report is ignored.

    A judgment is one distinct judge call (identical calls are asked once); a
    reply is one turn of it (a two-turn judge conversation gives two; a retry
    after a reply without a verdict, more).  Counts are increments.
    """

    def requested(self, judgments: int, reused: int) -> None:
        """``judgments`` more judgments are needed, ``reused`` of them already in the judgment log (done now)."""

    def expect_replies(self, n: int) -> None:
        """``n`` more judge replies are coming (negative: that many announced ones will not, their call failed)."""

    def replied(self, completion_tokens: int) -> None:
        """One judge reply came back, ``completion_tokens`` long."""

    def judged(self, status: ScoreStatus) -> None:
        """One judgment is final: ``SCORED``, ``PARSE_ERROR`` (no verdict, retries spent) or ``SCORING_ERROR``
        (the judge call failed)."""


class _Replying:
    """The judge's backend, telling ``listener`` of each reply (one turn of a judge call) as it comes back."""

    def __init__(self, backend: Backend, listener: JudgeListener) -> None:
        self.backend, self.listener = backend, listener
        self.announced = self.received = 0

    def expect(self, calls: Sequence[JudgeCall]) -> None:
        """Announce the replies ``calls`` will take: one per turn."""
        n = sum(1 + len(c.followups) for c in calls)
        self.announced += n
        self.listener.expect_replies(n)

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, Any]]:
        for i, output in self.backend.generate(requests):
            if isinstance(output, ModelOutput):
                self.received += 1
                self.listener.replied(output.completion_tokens)
            yield i, output

    def settle(self) -> None:
        """Withdraw the announced replies that will not come (the turns a failed call never reached)."""
        if self.announced != self.received:
            self.listener.expect_replies(self.received - self.announced)
            self.announced = self.received


class JudgmentLog:
    """``judgments.jsonl``: every judgment of a run, appended and fsynced as it
    finishes; read back as the cache of a resumed run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, Judgment] = {}
        self._fh: IO[str] | None = None
        if path.is_file():
            data = path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]  # a torn last line is dropped
            if len(complete) != len(data):
                path.write_bytes(complete)
            for lineno, line in enumerate(jsonl_lines(complete.decode("utf-8")), 1):
                if line.strip():
                    try:
                        entry = Judgment.model_validate_json(line)
                    except ValidationError as exc:
                        raise UserError(f"{path}:{lineno}: not a valid judgment ({exc.errors()[0]['msg']})") from None
                    self.entries[entry.key] = entry

    def append(self, judgment: Judgment) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(judgment.model_dump_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.entries[judgment.key] = judgment

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Judge:
    """An LLM judge: a backend, its decoding config, a retry budget and a log."""

    def __init__(self, backend: Backend, info: JudgeInfo, log: JudgmentLog | None = None, owns_backend: bool = False) -> None:
        self.backend = backend
        self.info = info
        self.log = log
        self.owns_backend = owns_backend  # False when the evaluated model's backend is reused
        self.listener = JudgeListener()
        self.stats: Counter[str] = Counter()  # calls, cached, tokens, seconds (benches, tests)
        self._fingerprint = json.dumps(
            {"model": info.model.model_dump(include={"id", "backend", "file_hash", "revision", "chat_template_hash"}),
             "generation": info.generation.model_dump()},
            sort_keys=True,
        )

    @property
    def id(self) -> str:
        return self.info.model.id

    def open_log(self, run_dir: Path) -> None:
        """Persist judgments in ``run_dir/judgments.jsonl`` (and reuse those there)."""
        self.close_log()
        self.log = JudgmentLog(run_dir / LOG_FILE)

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()

    @contextmanager
    def reporting_to(self, listener: JudgeListener) -> Iterator[None]:
        """Report to ``listener`` inside the block (the runner: one task's judging progress)."""
        previous, self.listener = self.listener, listener
        try:
            yield
        finally:
            self.listener = previous

    def key(self, call: JudgeCall) -> str:
        return sha256_text(self._fingerprint + json.dumps(call.conversation, ensure_ascii=False, sort_keys=True))

    def __call__(self, calls: Sequence[JudgeCall]) -> list[Judgment]:
        """Judge every call; returns one :class:`Judgment` per call, in order.

        Raises whatever the backend raises; judgments finished before that are
        already in the log, so the runner's retry (on resume) only asks for the rest.
        """
        if not calls:
            return []  # no progress entry for nothing to judge
        keys = [self.key(c) for c in calls]
        first: dict[str, JudgeCall] = {}
        for k, c in zip(keys, calls):
            first.setdefault(k, c)
        known = self.log.entries if self.log is not None else {}
        self.stats["cached"] += sum(1 for k in first if k in known)
        done: dict[str, Judgment] = {k: known[k] for k in first if k in known}
        attempts: dict[str, list[list[str]]] = {k: [] for k in first}
        todo = [k for k in first if k not in done]
        failures: list[str] = []
        listener = self.listener
        listener.requested(len(first), len(done))
        pending = set(todo)
        backend = _Replying(self.backend, listener)
        try:
            for attempt in range(1 + self.info.retries):
                if not todo:
                    break
                again = []
                began = time.monotonic()
                requests = [self._request(first[k]) for k in todo]
                backend.expect([first[k] for k in todo])
                for i, output in run_requests(backend, requests):  # type: ignore[arg-type] - it only generates
                    k = todo[i]
                    if not isinstance(output, ModelOutput):  # the call itself failed (e.g. HTTP, after retries)
                        failures.append(str(getattr(output, "reason", output)))
                        pending.discard(k)
                        listener.judged(ScoreStatus.SCORING_ERROR)
                        continue
                    self.stats["calls"] += 1
                    self.stats["prompt_tokens"] += output.prompt_tokens
                    self.stats["completion_tokens"] += output.completion_tokens
                    judgment = make_judgment(first[k], replies_of(output), judge=self.id, key=k, retries=attempts[k],
                                             prompt_tokens=output.prompt_tokens,
                                             completion_tokens=output.completion_tokens, truncated=cut_short(output))
                    if judgment.status is ScoreStatus.PARSE_ERROR and attempt < self.info.retries:
                        attempts[k].append(judgment.replies)  # recorded with the final judgment
                        again.append(k)
                        continue
                    done[k] = judgment
                    pending.discard(k)
                    if self.log is not None:
                        self.log.append(judgment)
                    listener.judged(judgment.status)
                self.stats["seconds"] += time.monotonic() - began
                todo = again
        except Exception:
            backend.settle()  # their replies will not come: withdrawn before they count as failed
            for _ in pending:  # the backend gave up on the whole batch
                listener.judged(ScoreStatus.SCORING_ERROR)
            raise
        finally:
            backend.settle()
        if failures:
            # The finished judgments are logged: a retry (resume) asks only for these.
            raise JudgeCallFailed(f"{len(failures)} judge call(s) failed, e.g. {failures[0]}")
        out = []
        for k, call in zip(keys, calls):
            stored = done[k]
            # Re-parse the stored replies for this call: a parser fix (or a call
            # sharing a prompt under another role) needs no new judge call.
            out.append(make_judgment(call, stored.replies, judge=self.id, key=k, retries=stored.retries,
                                     prompt_tokens=stored.prompt_tokens, completion_tokens=stored.completion_tokens,
                                     truncated=stored.truncated))
        return out

    def _request(self, call: JudgeCall) -> GenerateRequest | ConversationRequest:
        prompt: Any = list(call.messages)
        if not self.info.model.chat_template:  # a completion model: one text
            prompt = "\n\n".join(m.content for m in call.messages)
        if call.followups:
            return ConversationRequest(prompt, call.followups, self.info.generation)
        return GenerateRequest(prompt, self.info.generation)

    def close(self) -> None:
        self.close_log()
        if self.owns_backend:
            self.backend.close()


def require_judge(judge: Judge | None, task: str) -> Judge:
    """The judge a judged task scores with; a clear error when there is none."""
    if judge is None:
        raise UserError(f"{task} is graded by an LLM judge: add --judge MODEL, or judge a --generate-only run "
                        "later with `evalsuite judge --run DIR --judge MODEL`")
    return judge


def split_judge_args(args: dict[str, str]) -> tuple[GenerationConfig, int, dict[str, str], dict[str, str]]:
    """``-J key=value`` -> (judge decoding, retries, backend options, backend extras).

    Decoding keys: max_new_tokens, temperature, top_p, seed (defaults:
    temperature 0, 2,048 new tokens); ``retries`` = extra judge calls after a
    reply without a verdict (recorded); device, dtype, batch_size, revision,
    chat_template configure the judge's backend; any other key is a backend
    option, as ``-M`` is for the evaluated model (e.g. ``-J replies=FILE`` for mock).
    """
    decoding: dict[str, Any] = {}
    retries = 0
    options: dict[str, str] = {}
    extra: dict[str, str] = {}
    for key, value in args.items():
        if key in DECODING_KEYS:
            decoding[key] = coerce(value, DECODING_KEYS[key], f"-J {key}")
        elif key == "retries":
            retries = coerce(value, NonNegativeInt, "-J retries")
        elif key in BACKEND_KEYS:
            if key == "batch_size" and value != "auto":
                coerce(value, PositiveInt, "-J batch_size")  # else it would silently become "auto"
            options[key] = value
        else:
            extra[key] = value
    return DEFAULT_JUDGE_CONFIG.model_copy(update=decoding), retries, options, extra


def judge_backend_options(base: BackendOptions, options: dict[str, str], extra: dict[str, str]) -> BackendOptions:
    """The evaluated model's device and dtype, overridden by judge-specific ``-J`` options."""
    known = {f.name for f in fields(BackendOptions)}
    values: dict[str, Any] = {"device": base.device, "dtype": base.dtype, "batch_size": "auto", "extra": dict(extra)}
    for key, value in options.items():
        if key in known:
            if key == "batch_size":
                values[key] = int(value) if value.isdigit() else "auto"
            elif key == "chat_template":
                values[key] = value.lower() in ("1", "true", "yes", "on")
            else:
                values[key] = value
    return BackendOptions(**values)


def same_model(a: ModelInfo, b: ModelInfo) -> bool:
    """Whether two backends serve the same weights (the self-judging test).

    Weights hashed on both sides decide by hash, whatever the specs are called
    (an alias and a path to the same GGUF); otherwise the same model id is the
    same model, unless both name different revisions.  A served copy (vLLM,
    OpenAI-compatible: no file hash) of a local model therefore still counts.
    """
    if a.file_hash and b.file_hash:
        return a.file_hash == b.file_hash
    return a.id == b.id and (a.revision is None or b.revision is None or a.revision == b.revision)


def load_judge(
    spec: str,
    args: dict[str, str],
    base: BackendOptions,
    evaluated: Backend | None = None,
    evaluated_spec: str | None = None,
    evaluated_info: ModelInfo | None = None,
) -> Judge:
    """Build the judge of ``--judge SPEC -J key=value...`` through ``load_backend``.

    When the judge is the evaluated model (same spec, no judge-specific
    backend options) its loaded backend is shared rather than loaded twice.
    ``self_judging`` is set whenever both serve the same weights.
    """
    config, retries, options, extra = split_judge_args(args)
    same_spec = (spec or DEFAULT_MODEL) == (evaluated_spec or DEFAULT_MODEL)
    if evaluated is not None and same_spec and not options and not extra:
        backend, owned = evaluated, False
    else:
        backend, owned = load_backend(spec, judge_backend_options(base, options, extra)), True
    require(backend, GENERATE)
    info = JudgeInfo(
        spec=spec,
        model=backend.info,
        generation=config,
        retries=retries,
        self_judging=evaluated_info is not None and same_model(backend.info, evaluated_info),
    )
    return Judge(backend, info, owns_backend=owned)
