"""A deterministic backend for fast tests, with failure injection.

Options (``-M key=value``):
  reply=TEXT          the completion for every prompt (default "So the answer is (A).")
  replies=FILE        JSON object mapping a substring of the prompt to its reply
  loglikelihood=1     declare the capability; scores are a hash of the text
  fail_every=N        every N-th request raises (tests generation_error)
  drop_every=N        every N-th request gets no result at all (a backend that loses one)
  kill_after=N        SIGKILL the whole process after N completions (tests resume)
  crash_on=TEXT       SIGKILL the whole process on a prompt containing TEXT (a request that
                      crashes whatever runs it: a poisoned input)
  delay=SECONDS       sleep per request
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from evalsuite.backends.base import (
    GENERATE,
    LOGLIKELIHOOD,
    Backend,
    BackendOptions,
    ChoiceRequest,
    GenerateRequest,
    cut_at_stop,
    missing_capability,
)
from evalsuite.records import LoglikelihoodResult, ModelInfo, ModelOutput, Prompt


def _text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m.content for m in prompt)


class MockBackend(Backend):
    name = "mock"

    def __init__(self, model: str, options: BackendOptions) -> None:
        extra = options.extra
        self.reply = str(extra.get("reply", "So the answer is (A)."))
        self.replies: dict[str, str] = json.loads(Path(extra["replies"]).read_text()) if "replies" in extra else {}
        self.fail_every = int(extra.get("fail_every", 0))
        self.drop_every = int(extra.get("drop_every", 0))
        self.kill_after = int(extra.get("kill_after", 0))
        self.crash_on = str(extra.get("crash_on", ""))
        self.delay = float(extra.get("delay", 0))
        self.has_loglikelihood = str(extra.get("loglikelihood", "0")) in ("1", "true")
        self.capabilities = frozenset({GENERATE, LOGLIKELIHOOD} if self.has_loglikelihood else {GENERATE})
        self.calls = 0
        self.info = ModelInfo(id=model or "mock", backend=self.name, chat_template=options.chat_template is not False)

    def _complete(self, prompt: Prompt) -> str:
        text = _text(prompt)
        for key, reply in self.replies.items():
            if key in text:
                return reply
        return self.reply

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput]]:
        for i, req in enumerate(requests):
            self.calls += 1
            if self.delay:
                time.sleep(self.delay)
            if self.fail_every and self.calls % self.fail_every == 0:
                raise RuntimeError(f"mock failure on call {self.calls}")
            if self.crash_on and self.crash_on in _text(req.prompt):
                os.kill(os.getpid(), signal.SIGKILL)
            if self.drop_every and self.calls % self.drop_every == 0:
                continue
            texts, reasons = [], []
            for _ in range(req.config.n):
                text, stopped = cut_at_stop(self._complete(req.prompt), req.config.stop)
                texts.append(text)
                reasons.append("stop" if stopped else "eos")
            yield i, ModelOutput(
                completions=texts,
                finish_reasons=reasons,
                prompt_tokens=len(_text(req.prompt).split()),
                completion_tokens=sum(len(t.split()) for t in texts),
            )
            if self.kill_after and self.calls >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult]]:
        if not self.has_loglikelihood:
            raise missing_capability(self, LOGLIKELIHOOD)
        for i, req in enumerate(requests):
            ctx = _text(req.context)
            lps = [-int(hashlib.sha256((ctx + c).encode()).hexdigest()[:6], 16) / 1e6 for c in req.continuations]
            best = max(range(len(lps)), key=lps.__getitem__) if lps else -1
            yield i, LoglikelihoodResult(
                logprobs=lps,
                is_greedy=[j == best for j in range(len(lps))],
                token_counts=[max(1, len(c.split())) for c in req.continuations],
            )
