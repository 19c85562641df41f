"""OpenAI-compatible servers: ``--model openai:NAME -M base_url=http://host:port/v1``.

Chat prompts go to ``/chat/completions``, text prompts to ``/completions``;
requests run concurrently on a private event loop over an endpoint pool
(see :mod:`evalsuite.backends.endpoints` for retries, limits and draining).
A request that still fails after its last retry becomes a ``RequestFailure``
(recorded as ``generation_error``, never scored, retried by ``--resume``).

Prefilled answers.  evalsuite's chat prompts end with an assistant message
holding the answer cue ("A: Let's think step by step."), which the model must
continue rather than answer in a new turn.  ``-M prefill=``:

* ``continue``: chat request with vLLM's ``continue_final_message: true,
  add_generation_prompt: false`` -- the server renders the same text as
  transformers' ``apply_chat_template(continue_final_message=True)``, so the
  tokens equal the HF backend's.  The default for vLLM.
* ``messages``: the messages as they are, for servers that continue a final
  assistant message by themselves (llama.cpp's llama-server, whose
  ``--no-prefill-assistant`` turns it off; Anthropic-style APIs).  The default
  for llama.cpp.
* ``completions``: rendered here with ``-M tokenizer=HF_ID_OR_PATH``'s chat
  template and sent to ``/completions``.  The default when a tokenizer is given.

Any other server gets a prefilled prompt refused with one clear line, rather
than a silently different prompt.

Log-likelihood (``-M loglikelihood=auto|on|off``) is probed once: the echoed
prompt log-probability of a token must equal the log-probability the server
gave when it generated that token.  That catches servers that ignore ``echo``
or compute echoed log-probabilities at the wrong position (llama.cpp).
Scoring needs the model's tokenizer: vLLM's ``/tokenize`` or ``-M tokenizer``.

Options (``-M key=value``): base_url (comma-separated pool; default
$OPENAI_BASE_URL), api_key_env (default OPENAI_API_KEY; the key itself is never
an option, so it never reaches run.json or a log), concurrency, timeout,
max_retries, requests_per_s, tokens_per_min, drain_after, loglikelihood,
prefill, tokenizer.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from evalsuite.backends.base import (
    GENERATE,
    LOGLIKELIHOOD,
    Backend,
    BackendOptions,
    ChoiceRequest,
    GenerateRequest,
    RequestFailure,
    cut_at_stop,
    missing_capability,
    render_prompt,
    split_continuations,
)
from evalsuite.backends.endpoints import (
    CallFailed, Endpoint, EndpointPool, MalformedReply, PoolSettings, Unsupported, _one_line, check_url, clean_url,
)
from evalsuite.backends.event_loop import EventLoopThread
from evalsuite.backends.response_cache import ResponseCache, deterministic_body, model_identity
from evalsuite.errors import UserError, unknown_name
from evalsuite.records import LoglikelihoodResult, Message, ModelInfo, ModelOutput, Prompt, ServerInfo

T = TypeVar("T")
PREFILL_MODES = ("auto", "continue", "messages", "completions")
OPTIONS = {
    "base_url": "comma-separated base URLs (an endpoint pool), e.g. http://127.0.0.1:8000/v1",
    "api_key_env": "environment variable holding the API key (default OPENAI_API_KEY)",
    "concurrency": "requests in flight (default 32)",
    "timeout": "seconds per attempt (default 300)",
    "max_retries": "retries after the first attempt (default 5)",
    "requests_per_s": "client-side request rate limit",
    "tokens_per_min": "client-side token rate limit (prompt estimate + max tokens)",
    "drain_after": "consecutive failures that drain an endpoint of a pool (default 3)",
    "loglikelihood": "auto (probe the server), on (probe, fail if it cannot score) or off",
    "prefill": "how a prefilled assistant turn is sent: auto, continue, messages or completions",
    "tokenizer": "HF id or folder of the served model's tokenizer (prefill=completions, scoring)",
}
PROBE_TEXT = "The capital of France is"
MAX_STOP_STRINGS = 4  # OpenAI's limit; vLLM takes any number


@dataclass(frozen=True)
class OpenAISettings:
    base_urls: list[str]
    api_key_env: str
    pool: PoolSettings
    loglikelihood: Literal["auto", "on", "off"]
    prefill: str
    tokenizer: str | None

    @classmethod
    def parse(cls, extra: dict[str, Any], base_urls: list[str] | None = None, also_known: Iterable[str] = ()) -> "OpenAISettings":
        """Read ``-M`` options; raises ``UserError`` on an unknown key or a bad value
        (``also_known``: a subclass's own options, named in the hint)."""
        if "api_key" in extra:
            raise UserError("pass the API key through an environment variable (-M api_key_env=NAME, default "
                            "OPENAI_API_KEY): -M values are recorded in run.json")
        for key in extra:
            if key not in OPTIONS:
                raise unknown_name("-M option", key, set(OPTIONS) | set(also_known))
        recorded = "base_url" in extra  # -M values go into run.json; $OPENAI_BASE_URL does not
        urls = base_urls or [u.strip() for u in str(extra.get("base_url") or os.environ.get("OPENAI_BASE_URL", "")).split(",") if u.strip()]
        if not urls:
            raise UserError("no server to send requests to: pass -M base_url=http://HOST:PORT/v1 (or set OPENAI_BASE_URL)")
        for url in urls:
            check_url(url, credentials_allowed=not recorded)
        unique: dict[str, str] = {}
        for url in urls:
            unique.setdefault(clean_url(url), url)  # a URL given twice (or with and without a "/") is one endpoint
        urls = list(unique.values())
        mode = str(extra.get("loglikelihood", "auto"))
        if mode not in ("auto", "on", "off"):
            raise UserError(f"-M loglikelihood must be auto, on or off, got {mode!r}")
        prefill = str(extra.get("prefill", "auto"))
        if prefill not in PREFILL_MODES:
            raise UserError(f"-M prefill must be one of {', '.join(PREFILL_MODES)}, got {prefill!r}")
        pool = PoolSettings(
            timeout=_number(extra, "timeout", PoolSettings.timeout, float),
            max_retries=_number(extra, "max_retries", PoolSettings.max_retries, int, minimum=0),
            concurrency=_number(extra, "concurrency", PoolSettings.concurrency, int),
            requests_per_s=_number(extra, "requests_per_s", None, float),
            tokens_per_min=_number(extra, "tokens_per_min", None, float),
            drain_after=_number(extra, "drain_after", PoolSettings.drain_after, int),
        )
        return cls(urls, str(extra.get("api_key_env", "OPENAI_API_KEY")), pool, mode, prefill, extra.get("tokenizer") or None)  # type: ignore[arg-type]


class OpenAIBackend(Backend):
    name = "openai"
    caches_responses = True  # keys the response cache on its own HTTP bodies

    def __init__(
        self, model: str, options: BackendOptions, *, base_urls: list[str] | None = None, info: dict[str, Any] | None = None,
        also_known: Iterable[str] = (),
    ) -> None:
        """Connect to the server(s) and probe them; ``info`` overrides ModelInfo fields
        (a managed server knows the model's file hash).  Raises ``UserError`` when no
        endpoint answers, the model is not served, or the options are wrong."""
        self.options = options
        self.settings = OpenAISettings.parse(options.extra, base_urls, also_known)
        key = _api_key(self.settings.api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.loop = EventLoopThread()
        self.pool = EndpointPool(self.settings.base_urls, self.settings.pool, headers)
        self.cache = ResponseCache(options.response_cache) if options.response_cache else None
        self.capability_notes = {}
        self.max_tokens_field = "max_tokens"  # or max_completion_tokens, once the server asks for it
        try:
            self.model, entry, version = self.loop.run(self._discover(model))
            self.is_vllm = version is not None or entry.get("owned_by") == "vllm"
            self.tokenizer = self._tokenizer(entry)
            self.prefill = self._prefill_mode(entry)
            self.use_chat = options.chat_template is not False
            self.info = ModelInfo(
                id=self.model,
                backend=self.name,
                path=entry.get("root"),
                revision=options.revision,
                chat_template=self.use_chat,
                server=ServerInfo(
                    base_urls=[e.url for e in self.pool.endpoints],
                    model=self.model,
                    models_entry=entry,
                    version=version,
                    prefill=self.prefill,
                ),
            ).model_copy(update=info or {})
            self._set_loglikelihood()
        except BaseException:
            self.close()
            raise

    # -- start-up ----------------------------------------------------------------

    async def _discover(self, model: str) -> tuple[str, dict[str, Any], str | None]:
        """(model name, its /models entry, server version); drains unreachable endpoints."""
        listings: dict[str, list[dict[str, Any]]] = {}
        errors: dict[str, str] = {}
        self.pool.auto_drain = False  # each endpoint is asked once here; the unreachable ones are drained below
        for ep in self.pool.endpoints:
            try:
                listings[ep.url], _ = await self.pool.call(
                    "GET", "/models", parse=_model_entries, endpoint=ep, retries=2,
                    timeout=self.pool.quick_timeout,
                )
            except CallFailed as exc:
                if exc.status in (401, 403):
                    raise UserError(f"{ep.url} refused the API key (HTTP {exc.status}): set ${self.settings.api_key_env} "
                                    "or name another variable with -M api_key_env=NAME") from None
                if exc.status is not None and 300 <= exc.status < 400:
                    raise UserError(exc.reason) from None
                if exc.status in (404, 405):
                    raise UserError(f"no OpenAI-compatible API at {ep.url}: {exc.reason} (a base_url usually ends in /v1)") from None
                errors[ep.url] = exc.reason
        self.pool.auto_drain = True
        if not listings:
            if len(errors) == 1:
                raise UserError(f"cannot reach the server: {next(iter(errors.values()))}")
            raise UserError(f"cannot reach any of the {len(errors)} endpoints: {'; '.join(errors.values())}")
        for ep in self.pool.endpoints:
            if ep.url in errors:
                self.pool.drain(ep, errors[ep.url])
        served = {m.get("id") for listing in listings.values() for m in listing}
        if not model:
            if len(served) != 1:
                raise UserError(f"name the model: openai:NAME (the server serves {', '.join(sorted(map(str, served))) or 'no model list'})")
            model = str(next(iter(served)))
        entries = [next((m for m in listing if m.get("id") == model), None) for listing in listings.values()]
        lacking = {url: sorted(str(m.get("id")) for m in listing) for (url, listing), e in zip(listings.items(), entries) if e is None}
        if lacking:
            raise UserError(f"model '{model}' is not served at " + "; ".join(
                f"{url} (it serves: {', '.join(ids) or 'no model'})" for url, ids in lacking.items()))
        keep = ("id", "root", "parent", "max_model_len", "owned_by")
        entry = {k: v for k, v in entries[0].items() if k in keep and v is not None}
        roots = {e.get("root") for e in entries}
        if len(roots) > 1:
            raise UserError(f"the endpoints serve different models named '{model}': {', '.join(map(str, roots))}")
        return model, entry, await self._version()

    async def _version(self) -> str | None:
        try:
            data, _ = await self.pool.call("GET", "//version", retries=1, timeout=self.pool.quick_timeout)
            return str(data["version"]) if isinstance(data, dict) and "version" in data else None
        except CallFailed:
            return None

    def _tokenizer(self, entry: dict[str, Any]) -> "Tokenizer | None":
        if self.settings.tokenizer:
            return LocalTokenizer(self.settings.tokenizer, self.options.revision)
        return ServerTokenizer(self) if self.is_vllm else None

    def _prefill_mode(self, entry: dict[str, Any]) -> str | None:
        mode = self.settings.prefill
        if mode == "completions" and not isinstance(self.tokenizer, LocalTokenizer):
            raise UserError("-M prefill=completions renders prompts here: also pass -M tokenizer=HF_ID_OR_PATH")
        if mode != "auto":
            return mode
        if self.is_vllm:
            return "continue"
        if entry.get("owned_by") == "llamacpp":
            return "messages"
        return "completions" if self.tokenizer else None

    def _set_loglikelihood(self) -> None:
        mode = self.settings.loglikelihood
        why = "turned off with -M loglikelihood=off" if mode == "off" else self._probe_loglikelihood()
        if why and mode == "on":
            raise UserError(f"-M loglikelihood=on, but the server cannot score: {why}")
        self.capabilities = frozenset({GENERATE} if why else {GENERATE, LOGLIKELIHOOD})
        if why:
            self.capability_notes = {LOGLIKELIHOOD: why}
        self.info = self.info.model_copy(
            update={"server": self.info.server.model_copy(update={"loglikelihood": f"off: {why}" if why else "on"})}
        )

    def _probe_loglikelihood(self) -> str | None:
        """None if the server scores prompts correctly, else why not."""
        if self.tokenizer is None:
            return "no tokenizer for this server: pass -M tokenizer=HF_ID_OR_PATH"
        try:
            return self.loop.run(self._probe())
        except CallFailed as exc:
            return f"probe failed: {exc.reason}"

    async def _probe(self) -> str | None:
        # 1. generate one token greedily and note its log-probability
        gen = {"model": self.model, "prompt": PROBE_TEXT, "max_tokens": 1, "temperature": 0, "logprobs": 1}
        (token, lp), _ = await self._call("/completions", gen, lambda d: (_choice_text(d["choices"][0], chat=False), _completion_logprobs(d, echoed=False)))
        expected = lp["token_logprobs"][0] if lp and lp["token_logprobs"] else None
        if expected is None:
            return "the server returns no log-probabilities (logprobs on /completions)"
        # 2. echo prompt + that token: its echoed log-probability must be the same
        echo = {**gen, "prompt": PROBE_TEXT + token, "echo": True}
        lp, _ = await self._call("/completions", echo, lambda d: _completion_logprobs(d, echoed=True))
        if not lp or not lp["token_logprobs"]:
            return "the server returns no echoed prompt log-probabilities (echo + logprobs on /completions)"
        offsets, lps = lp["text_offset"], lp["token_logprobs"]
        if lps[0] is not None:
            return "the first echoed log-probability is not null: prompt log-probabilities are misaligned"
        at = [k for k, off in enumerate(offsets) if off == len(PROBE_TEXT) and lp["tokens"][k] == token]
        if not at or lps[at[0]] is None or abs(lps[at[0]] - expected) > 1e-3:
            got = lps[at[0]] if at and lps[at[0]] is not None else float("nan")
            return (f"echoed prompt log-probabilities disagree with generation ({got:.4f} vs {expected:.4f} for "
                    f"{token!r}): the server computes them at the wrong position")
        ids = await asyncio.to_thread(self.tokenizer.tokenize, PROBE_TEXT + token, True)
        if len(ids) != at[0] + 1:
            return f"the tokenizer gives {len(ids)} tokens where the server has {at[0] + 1}: it is not the served model's"
        return None

    # -- generation ----------------------------------------------------------------

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput | RequestFailure]]:
        calls = [self._generation_call(r) for r in requests]  # prompt errors raise here, before any request
        yield from self.loop.as_completed([self._send(path, body, parse) for path, body, parse in calls])

    def _generation_call(self, req: GenerateRequest) -> tuple[str, dict[str, Any], Callable[[Any], ModelOutput]]:
        cfg = req.config
        body: dict[str, Any] = {"model": self.model}
        path = self._prompt_into(req.prompt, body)
        body.update(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
        if not cfg.greedy:
            body["top_p"] = cfg.top_p
        if cfg.n != 1:
            body["n"] = cfg.n
        stops = list(dict.fromkeys(s for s in cfg.stop if s))  # an empty stop string is refused, or ends every completion at once
        if stops:
            # OpenAI refuses more than 4 (HTTP 400); cut_at_stop below applies the rest
            body["stop"] = stops if self.is_vllm else stops[:MAX_STOP_STRINGS]
        if cfg.seed is not None:
            body["seed"] = cfg.seed

        def parse(data: Any) -> ModelOutput:
            texts, reasons = [], []
            for c in _ordered_choices(data, cfg.n, "completions"):
                text, cut = cut_at_stop(_choice_text(c, chat=path != "/completions"), cfg.stop)  # for servers that ignore stop strings
                texts.append(text)
                reasons.append("stop" if cut else _finish_reason(c))
            return ModelOutput(
                completions=texts,
                finish_reasons=reasons,
                prompt_tokens=_usage(data, "prompt_tokens"),
                completion_tokens=_usage(data, "completion_tokens"),
            )

        return path, body, parse

    def _prompt_into(self, prompt: Prompt, body: dict[str, Any]) -> str:
        """Put the prompt into ``body``; return the endpoint path."""
        if isinstance(prompt, str):
            body["prompt"] = prompt
            return "/completions"
        if not self.use_chat:
            raise UserError("this prompt is a chat conversation but the chat template is off")
        mode = self.prefill if prompt[-1].role == "assistant" else "messages"
        if mode is None:
            raise UserError(
                f"this task prefills the assistant's answer, and {self.pool.endpoints[0].url} is not known to continue it: "
                "pass -M prefill=continue (vLLM, SGLang), -M prefill=messages (servers that continue a final assistant "
                "message) or -M prefill=completions with -M tokenizer=HF_ID_OR_PATH"
            )
        if mode == "completions":
            assert isinstance(self.tokenizer, LocalTokenizer)
            text = self.tokenizer.render(prompt)
            if self.is_vllm:
                body["add_special_tokens"] = False  # the chat template wrote them
            else:  # a server that adds BOS itself (llama.cpp, TGI, ...) would otherwise begin with two
                text = self.tokenizer.without_added_bos(text)
            body["prompt"] = text
            return "/completions"
        body["messages"] = [m.model_dump() for m in prompt]
        if mode == "continue":
            body.update(continue_final_message=True, add_generation_prompt=False)
        return "/chat/completions"

    async def _send(self, path: str, body: dict[str, Any], parse: Callable[[Any], Any]) -> Any:
        """One request through the cache and the pool; a failure is returned, not raised."""
        field = self.max_tokens_field
        try:
            result, endpoint = await self._call(path, body, parse)
        except CallFailed as exc:
            # OpenAI's reasoning models refuse max_tokens on /chat/completions and name the field they take.
            # Switched once: a later 400 that names the new field ("max_completion_tokens is too large") is the answer.
            if "max_tokens" in body and field == "max_tokens" and exc.status == 400 and "max_completion_tokens" in exc.reason:
                self.max_tokens_field = "max_completion_tokens"
                return await self._send(path, body, parse)
            return RequestFailure(exc.reason)
        if isinstance(result, ModelOutput) and endpoint is not None and len(self.pool.endpoints) > 1:
            result = result.model_copy(update={"endpoint": endpoint.url})
        return result

    async def _call(
        self, path: str, body: dict[str, Any], parse: Callable[[Any], T], deterministic: bool | None = None
    ) -> tuple[T, Endpoint | None]:
        """POST through the response cache (deterministic requests only; by default
        judged from the body): a hit costs no server call and comes back with
        ``cached=True`` where the result has that field.  Raises ``CallFailed``
        after the last retry."""
        cacheable = self.cache is not None and (deterministic_body(body) if deterministic is None else deterministic)
        if cacheable:
            hit = self.cache.get(self._identity, {"path": path, **body})
            try:
                result = None if hit is None else parse(hit)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError):  # a stored reply this version cannot read
                result = None
            if result is not None:
                return (result.model_copy(update={"cached": True}) if hasattr(result, "cached") else result), None
        raw: list[Any] = []

        def keep(data: Any) -> T:
            result = parse(data)  # raises on a malformed reply, which is retried and never cached
            raw.append(data)
            return result

        result, endpoint = await self.pool.call("POST", path, lambda: self._as_sent(body), keep, tokens=_token_estimate(body))
        if cacheable:
            self.cache.put(self._identity, {"path": path, **body}, raw[-1])
        return result, endpoint

    def _as_sent(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body with the field name for max tokens the server takes, read when an
        attempt starts: requests queued before the server named it send the right one."""
        if "max_tokens" not in body or self.max_tokens_field == "max_tokens":
            return body
        return {(self.max_tokens_field if k == "max_tokens" else k): v for k, v in body.items()}

    @property
    def _identity(self) -> dict[str, Any]:
        return model_identity(self.info)

    # -- log-likelihood ----------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult | RequestFailure]]:
        if LOGLIKELIHOOD not in self.capabilities:
            raise missing_capability(self, LOGLIKELIHOOD)
        yield from self.loop.as_completed([self._score(r) for r in requests])

    async def _score(self, req: ChoiceRequest) -> LoglikelihoodResult | RequestFailure:
        try:
            ctx, conts = await asyncio.to_thread(self._split, req)
        except CallFailed as exc:
            return RequestFailure(f"tokenizing: {exc.reason}")
        # Token ids, so the server scores exactly the tokens the HF backend would.
        body = {"model": self.model, "prompt": [ctx + c for c in conts], "max_tokens": 1, "temperature": 0,
                "echo": True, "logprobs": 1}
        n = len(ctx)

        def parse(data: Any) -> LoglikelihoodResult:
            sums, greedy = [], []
            for choice, cont in zip(_ordered_choices(data, len(conts), "prompts"), conts):
                lps, top = choice["logprobs"]["token_logprobs"], choice["logprobs"]["top_logprobs"]
                span = range(n, n + len(cont))
                if len(lps) < n + len(cont) or any(lps[k] is None for k in span):
                    raise MalformedReply("echoed log-probabilities do not cover the continuation")
                if any(math.isnan(lps[k]) or lps[k] == math.inf for k in span):  # JSON's NaN/Infinity: never a score
                    raise MalformedReply(f"a log-probability that is no number: {[lps[k] for k in span]}")
                sums.append(float(sum(lps[k] for k in span)))
                if not isinstance(top, list) or len(top) < n + len(cont) or not all(isinstance(top[k], dict) and top[k] for k in span):
                    # the server would answer so again: not retried, and is_greedy is never guessed
                    raise Unsupported("the server returns no top_logprobs for the echoed prompt: is_greedy cannot be computed")
                # greedy: no other token at that position is more likely (top_logprobs holds the top-1)
                greedy.append(all(lps[k] >= max(top[k].values()) - 1e-6 for k in span))
            return LoglikelihoodResult(logprobs=sums, is_greedy=greedy, token_counts=[len(c) for c in conts])

        return await self._send("/completions", body, parse)

    def _split(self, req: ChoiceRequest) -> tuple[list[int], list[list[int]]]:
        assert self.tokenizer is not None
        if isinstance(req.context, str):
            text, special = req.context, True
        else:
            text, special = self.tokenizer.render(req.context), False
        return split_continuations(self.tokenizer.tokenize, text, special, req.continuations)

    # -- the rest -------------------------------------------------------------------------

    @property
    def effective_batch_size(self) -> int:
        return self.settings.pool.concurrency

    def close(self) -> None:
        if self.loop.loop.is_closed():
            return
        try:
            self.loop.run(self.pool.aclose(), timeout=10)
        finally:
            self.loop.close()
            if self.cache is not None:
                self.cache.close()


class Tokenizer:
    """The served model's tokenizer: ``tokenize`` and chat ``render`` (blocking calls)."""

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        raise NotImplementedError

    def render(self, messages: list[Message]) -> str:
        raise NotImplementedError


class ServerTokenizer(Tokenizer):
    """vLLM's /tokenize and /detokenize; called from worker threads, not the loop."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend

    def _post(self, path: str, body: dict[str, Any], field: str, kind: type) -> Any:
        """``field`` of the reply, checked to be a ``kind`` (a list of ints for
        "tokens") inside the call, so a malformed reply is retried and then a
        ``CallFailed``, never a crash of the run."""

        def parse(data: Any) -> Any:
            value = data[field]
            if not isinstance(value, kind) or (kind is list and not all(isinstance(t, int) for t in value)):
                raise MalformedReply(f"{field} is not a {'list of token ids' if kind is list else kind.__name__}")
            return data

        body = {"model": self.backend.model, **body}
        data, _ = self.backend.loop.run(self.backend._call(path, body, parse, deterministic=True))
        return data[field]

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return self._post("//tokenize", {"prompt": text, "add_special_tokens": add_special_tokens}, "tokens", list)

    def render(self, messages: list[Message]) -> str:
        prefilled = messages[-1].role == "assistant"
        ids = self._post("//tokenize", {
            "messages": [m.model_dump() for m in messages],
            "add_generation_prompt": not prefilled,
            "continue_final_message": prefilled,
            "add_special_tokens": False,
        }, "tokens", list)
        return self._post("//detokenize", {"tokens": ids}, "prompt", str)


class LocalTokenizer(Tokenizer):
    """A Hugging Face tokenizer loaded here (``-M tokenizer=ID_OR_PATH``)."""

    def __init__(self, name: str, revision: str | None) -> None:
        from transformers import AutoTokenizer

        if name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
            raise UserError(f"cannot load tokenizer '{name}': no such folder")
        try:
            self.tok = AutoTokenizer.from_pretrained(str(Path(name).expanduser()) if name.startswith("~") else name, revision=revision)
        except (OSError, ValueError, KeyError) as exc:  # a folder without a tokenizer is a ValueError
            raise UserError(f"cannot load tokenizer '{name}': {_one_line(str(exc))[:300]}") from None

    def tokenize(self, text: str, add_special_tokens: bool) -> list[int]:
        return list(self.tok(text, add_special_tokens=add_special_tokens)["input_ids"])

    def render(self, messages: list[Message]) -> str:
        return render_prompt(self.tok, messages)[0]

    def without_added_bos(self, text: str) -> str:
        """``text`` less a leading BOS that tokenizing it with special tokens adds
        again (a chat template that writes ``{{ bos_token }}``), so a server that
        tokenizes as transformers does sees exactly one BOS."""
        bos = self.tok.bos_token
        adds_bos = bool(bos) and self.tok("", add_special_tokens=True)["input_ids"][:1] == [self.tok.bos_token_id]
        return text[len(bos):] if adds_bos and text.startswith(bos) else text


def _ordered_choices(data: Any, count: int, what: str) -> list[dict[str, Any]]:
    """The reply's choices in index order, exactly ``count`` of them (indices 0..count-1).

    Raises ``MalformedReply`` (retried) for a reply without choices, and
    ``Unsupported`` (not retried: the server answers so every time) for the
    wrong number of choices or indices that repeat or skip one."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices and isinstance(data, dict) and data.get("error"):  # gateways (OpenRouter, ...) send errors with 200
        err = data["error"]
        raise MalformedReply(f"an error with status 200: {_one_line(str(err.get('message') if isinstance(err, dict) else err))[:300]}")
    if not choices or not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise MalformedReply("a reply without choices")
    indices = [c.get("index", k) for k, c in enumerate(choices)]
    asked = f"n={count}" if what == "completions" else f"{count} {what}"
    if len(choices) != count:
        raise Unsupported(f"the server returned {len(choices)} {what} for {asked}"
                          + (": it does not support n" if what == "completions" and count > 1 else ""))
    if not all(isinstance(i, int) for i in indices) or sorted(indices) != list(range(count)):
        raise Unsupported(f"the server returned choices with indices {indices} for {asked}")
    return sorted(choices, key=lambda c: c.get("index", 0))


def _model_entries(data: Any) -> list[dict[str, Any]]:
    """The entries of a /models listing that have a string id, each with only its
    string, number and boolean fields: a listing with a list or an object for a
    root or an id is read, not a crash (they become set members and cache keys)."""
    return [{k: v for k, v in m.items() if isinstance(v, (str, int, float, bool))}
            for m in data["data"] if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _completion_logprobs(data: Any, echoed: bool) -> dict[str, list[Any]] | None:
    """The first choice's ``logprobs`` in the /completions format: ``token_logprobs``
    (numbers or null) and, for an ``echoed`` prompt, ``tokens`` and ``text_offset``,
    lists of one length; None where the reply has none.  Raises ``Unsupported``
    (not retried) for another format, e.g. the chat one (``{"content": [...]}``)."""
    lp = _ordered_choices(data, 1, "completions")[0].get("logprobs")
    if not lp:
        return None
    fields = ("tokens", "token_logprobs", "text_offset") if echoed else ("token_logprobs",)
    if (not isinstance(lp, dict) or not all(isinstance(lp.get(f), list) for f in fields) or len({len(lp[f]) for f in fields}) != 1
            or not all(x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in lp["token_logprobs"])):
        raise Unsupported("log-probabilities are not in the /completions format (tokens, token_logprobs, text_offset)")
    return lp


def _choice_text(choice: dict[str, Any], chat: bool) -> str:
    """The answer in one choice; raises ``Unsupported`` where there is none to score.

    A choice the content filter cut, a tool call (no tools are offered) or a
    message with reasoning but no content (``content: null``) is no answer: it
    becomes a ``generation_error``, never an empty completion scored as wrong.
    vLLM's "abort" (the server dropped the request) is retried."""
    reason = choice.get("finish_reason")
    if reason == "abort":
        raise MalformedReply("the server aborted the request (finish_reason abort)")
    if reason == "content_filter":
        raise Unsupported("the server's content filter withheld the completion (finish_reason content_filter)")
    if not chat:
        text = choice.get("text")
    else:
        message = choice.get("message")
        if not isinstance(message, dict):
            raise MalformedReply("a choice without a message")
        if reason in ("tool_calls", "function_call") or message.get("tool_calls") or message.get("function_call"):
            raise Unsupported(f"the model called a tool instead of answering (finish_reason {reason})")
        text = message.get("content")
        reasoned = bool(message.get("reasoning_content") or message.get("reasoning"))
        if isinstance(text, list):  # content parts: [{"type": "text", "text": ...}, {"type": "thinking", ...}]
            parts = [p for p in text if isinstance(p, dict)]
            reasoned = reasoned or any(p.get("type") in ("thinking", "reasoning") for p in parts)
            texts = [p.get("text") or "" for p in parts if p.get("type") == "text"]
            text = "".join(texts) if texts else None
        refusal = message.get("refusal")
        if refusal and not text:
            raise Unsupported(f"the model refused: {_one_line(str(refusal))[:300]} (finish_reason {reason})")
        # A reasoning model cut off before its answer sends content "" (llama.cpp) or null (vLLM): no answer either way
        if text is None or (reasoned and isinstance(text, str) and not text.strip()):
            thought = " after reasoning (raise max_new_tokens)" if reasoned else ""
            raise Unsupported(f"the server returned no content{thought} (finish_reason {reason})")
    if not isinstance(text, str):
        raise MalformedReply("a choice without text")
    return text


def _api_key(variable: str) -> str | None:
    """The key in ``$variable``, less the whitespace a key file's line end leaves;
    raises ``UserError`` (never quoting it) where no HTTP header can carry it."""
    key = (os.environ.get(variable) or "").strip()
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in key):
        raise UserError(f"${variable} holds a space, control or non-ASCII character: it cannot be sent as an API key")
    return key or None


def _usage(data: dict[str, Any], field: str) -> int:
    """A token count from ``usage``; 0 where the server gives none or no count
    (the counts are bookkeeping: an answer is not failed for them)."""
    usage = data.get("usage")
    value = usage.get(field) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _finish_reason(choice: dict[str, Any]) -> str:
    """evalsuite's finish reasons: "stop" (a stop string), "eos", "length".

    vLLM says "stop" for both a stop string and the end-of-sequence token and
    tells them apart in ``stop_reason`` (the string, or null/a token id)."""
    reason = str(choice.get("finish_reason") or "")
    if reason == "stop" and "stop_reason" in choice:
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    return reason


def _token_estimate(body: dict[str, Any]) -> int:
    """Tokens a request may use, for the tokens/min limit: ~4 characters per
    prompt token plus every token it may generate."""
    prompt = body.get("prompt") or body.get("messages")
    size = sum(len(p) for p in prompt) if isinstance(prompt, list) and prompt and isinstance(prompt[0], list) else len(json.dumps(prompt)) // 4
    return size + int(body.get("max_tokens") or body.get("max_completion_tokens") or 0) * int(body.get("n", 1))


def _number(extra: dict[str, Any], key: str, default: Any, kind: type, minimum: float | None = None) -> Any:
    """``-M key`` as a number; positive unless ``minimum`` says otherwise."""
    if key not in extra:
        return default
    try:
        value = kind(extra[key])
    except ValueError:
        raise UserError(f"-M {key} must be {'a whole' if kind is int else 'a'} number, got {extra[key]!r}") from None
    if not math.isfinite(value):  # "nan" and "inf" parse as floats
        raise UserError(f"-M {key} must be a finite number, got {extra[key]!r}")
    if (value < minimum) if minimum is not None else (value <= 0):
        raise UserError(f"-M {key} must be {'at least ' + str(minimum) if minimum is not None else 'positive'}, got {extra[key]!r}")
    return value
