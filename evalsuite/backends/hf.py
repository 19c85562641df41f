"""Local Hugging Face transformers backend: hub ids, local folders and GGUF files."""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from evalsuite.backends.base import (
    GENERATE,
    LOGLIKELIHOOD,
    Backend,
    BackendOptions,
    ChoiceRequest,
    GenerateRequest,
    RequestFailure,
    cut_at_stop,
    render_prompt,
    split_continuations,
)
from evalsuite.backends.batching import Batch, admission_order, plan_batches
from evalsuite.backends.models import resolve_model
from evalsuite.errors import UserError
from evalsuite.records import GenerationConfig, LoglikelihoodResult, ModelInfo, ModelOutput, Prompt
from evalsuite.templates import sha256_text

CPU_BATCH = 16  # static batches: measured ~70 tok/s at 16 vs ~20 at 1 on 2 cores
CPU_ROWS = 64  # continuous engine: rows decoded together (the KV budget may admit fewer)
GPU_ROWS = 256
GPU_BATCH_START = 64  # halved on OOM
# rows x padded prompt tokens per batch; beyond this CPU prefill slows sharply
CPU_BATCH_TOKENS = 16384
GPU_BATCH_TOKENS = 262144
CPU_KV_BYTES = 2 * 2**30  # KV slots of the continuous engine on CPU
DRAFT_TOKENS = 4  # prompt-lookup draft tokens a greedy row verifies per step (-M draft_tokens=0: off)


class HFBackend(Backend):
    name = "hf"
    capabilities = frozenset({GENERATE, LOGLIKELIHOOD})

    def __init__(self, model: str, options: BackendOptions) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch  # heavy: imported only when an hf model is actually used
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # our own progress bar is the one that matters
        self.torch = torch
        self.options = options
        self.device = _pick_device(options.device, torch)
        self.dtype = _pick_dtype(options.dtype, self.device, torch)
        self.stats: Counter[str] = Counter()  # forward passes etc., for tests and benches
        # -M options are checked before the model loads, so a typo costs no wait.
        engine = _choice(options, "engine", ("auto", "continuous", "static"))
        linear = _choice(options, "linear", ("auto", "onednn", "aten"))
        self._draft_tokens = _non_negative_int(options.extra.get("draft_tokens", DRAFT_TOKENS), "draft_tokens")
        resolved = resolve_model(model)
        self.model, self.tokenizer = self._load(resolved.loadable)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if options.chat_template and not has_template:
            raise UserError(f"model {resolved.id} has no chat template; drop --chat-template")
        self.use_chat = has_template if options.chat_template is None else options.chat_template
        self.static_cache = str(options.extra.get("cache", "")) == "static"
        gpu = self.device.startswith("cuda")
        self.max_batch_tokens = int(options.extra.get("max_batch_tokens", GPU_BATCH_TOKENS if gpu else CPU_BATCH_TOKENS))
        self.kv_cache_bytes = self._kv_budget(options.extra.get("kv_cache_gb"))
        self.linear_kernel = self._pick_linear(linear)
        self.engine = self._pick_engine(engine)
        # --batch-size: rows decoded together (continuous engine) or rows per static batch.
        auto = (GPU_ROWS if gpu else CPU_ROWS) if self.engine is not None else (GPU_BATCH_START if gpu else CPU_BATCH)
        self.batch_size = int(options.batch_size) if options.batch_size != "auto" else auto
        if self.engine is not None:
            self.engine.max_rows = self.batch_size
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_kv: Any = None
        self.info = ModelInfo(
            id=resolved.id,
            backend=self.name,
            path=str(resolved.source),
            revision=options.revision,
            file_hash=resolved.file_hash,
            dtype=str(self.dtype).removeprefix("torch."),
            device=self.device,
            parameters=sum(p.numel() for p in self.model.parameters()),
            chat_template=self.use_chat,
            chat_template_hash=sha256_text(self.tokenizer.chat_template) if has_template else None,
            linear_kernel=self.linear_kernel,
        )

    # -- loading -----------------------------------------------------------

    def _load(self, path: Path | str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(path, revision=self.options.revision)
            model = AutoModelForCausalLM.from_pretrained(path, revision=self.options.revision, dtype=self.dtype)
        except OSError as exc:
            raise UserError(f"cannot load model '{path}': {str(exc).splitlines()[0]}") from None
        return model.to(self.device).eval(), tok

    def _pick_engine(self, requested: str) -> Any:
        """A SlotEngine (continuous batching) unless ``-M engine=static`` or the model needs ``model.generate``."""
        from evalsuite.backends import hf_engine  # imports torch

        if requested == "static":
            return None
        why = hf_engine.supports(self.model)
        if why is not None:
            if requested == "continuous":
                raise UserError(f"-M engine=continuous: this model needs model.generate() ({why})")
            return None
        return hf_engine.SlotEngine(self.model, self._eos(), CPU_ROWS, self.kv_cache_bytes, self.stats,
                                    draft_tokens=self._draft_tokens)

    def _pick_linear(self, requested: str) -> str:
        """``onednn`` when the model's float32 CPU linears run through oneDNN (evalsuite.backends.onednn_linear),
        else ``aten``; ``-M linear=aten`` keeps PyTorch's default, ``-M linear=onednn`` insists."""
        from evalsuite.backends import onednn_linear

        if requested != "aten" and onednn_linear.pack_linears(self.model):
            return "onednn"
        if requested == "onednn":
            raise UserError("-M linear=onednn: needs a float32 model on the CPU and a PyTorch built with oneDNN")
        return "aten"

    def _kv_budget(self, gigabytes: Any) -> int:
        """Bytes the continuous engine may hold in KV slots: ``-M kv_cache_gb``, else 2 GiB on CPU
        (vLLM's usual CPU KV space) or half the free GPU memory."""
        if gigabytes is not None:
            try:
                return int(float(gigabytes) * 2**30)
            except ValueError:
                raise UserError(f"-M kv_cache_gb={gigabytes}: expected a number of GiB") from None
        if self.device.startswith("cuda"):
            return self.torch.cuda.mem_get_info(self.torch.device(self.device))[0] // 2
        return CPU_KV_BYTES

    def live_tokens(self) -> tuple[int, int]:
        """Prompt tokens prefilled and tokens generated so far (the engine counts per step, static batches per batch)."""
        return self.stats["prefill_tokens"], self.stats["generated"]

    def _eos(self) -> set[int]:
        return set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size

    # -- prompts -------------------------------------------------------------

    def render(self, prompt: Prompt) -> tuple[str, bool]:
        """Prompt text and whether special tokens must still be added."""
        return render_prompt(self.tokenizer, prompt, self.use_chat)

    def _encode(self, prompt: Prompt) -> list[int]:
        text, special = self.render(prompt)
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    # -- generation ------------------------------------------------------------

    @property
    def context_length(self) -> int | None:
        """Positions the model declares (``max_position_embeddings``, GPT-2's ``n_positions``...), or None."""
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def _budgets(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[int]:
        """New tokens each prompt may get: ``max_new_tokens``, or what is left of the context."""
        limit = self.context_length
        return [max_new_tokens if limit is None else min(max_new_tokens, limit - len(p)) for p in prompts]

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[tuple[int, ModelOutput | RequestFailure]]:
        """Completions of each request; a prompt the model's context cannot hold is a RequestFailure.

        A row stops at the end of the context (finish reason "length") when
        its prompt plus ``max_new_tokens`` would pass it: past its trained
        positions a model either fails (learned position embeddings) or
        extrapolates into text nobody should score.
        """
        encoded = [self._encode(r.prompt) for r in requests]
        limit = self.context_length
        fits = []
        for i, ids in enumerate(encoded):
            if limit is not None and len(ids) >= limit:
                yield i, RequestFailure(f"the prompt is {len(ids)} tokens; the model's context holds {limit}, "
                                        "leaving no room for an answer")
            else:
                fits.append(i)
        # One generation config per pass (a static batch needs one anyway).
        by_config = sorted(fits, key=lambda i: requests[i].config.model_dump_json())
        for _, group in groupby(by_config, key=lambda i: requests[i].config.model_dump_json()):
            idx = list(group)
            config = requests[idx[0]].config
            if self.engine is not None:
                yield from self._generate_continuous(idx, encoded, config)
            else:
                yield from self._generate_static(idx, encoded, config)

    def _generate_continuous(self, idx: list[int], encoded: list[list[int]], config: GenerationConfig) -> Iterator[tuple[int, ModelOutput]]:
        """Rows refilled as they finish (evalsuite.backends.hf_engine); halves the rows on a GPU OOM."""
        from evalsuite.backends.hf_engine import Finisher, Sampling

        prompts = [encoded[i] for i in idx]
        budgets = self._budgets(prompts, config.max_new_tokens)
        sampling = Sampling(config.temperature, config.top_p, config.seed)
        finisher = Finisher(self.tokenizer, self.engine.eos, config.stop, budgets)
        pending = admission_order(prompts)
        while pending:
            finished: set[int] = set()
            try:
                for j, rows in self.engine.run(prompts, pending, config.n, budgets, sampling, finisher):
                    finished.add(j)
                    yield idx[j], self._output(len(prompts[j]), [r.tokens for r in rows], config.stop)
                return
            except self.torch.cuda.OutOfMemoryError:
                if self.engine.max_rows <= config.n:
                    raise
                self.engine.max_rows = self.batch_size = max(config.n, self.engine.max_rows // 2)
                self.torch.cuda.empty_cache()
                pending = [p for p in pending if p[0] not in finished]

    def _generate_static(self, idx: list[int], encoded: list[list[int]], config: GenerationConfig) -> Iterator[tuple[int, ModelOutput]]:
        """Length-sorted static batches through ``model.generate``; halves the batch on a GPU OOM.

        A prompt whose answer the context cuts short runs on its own, so its
        budget does not cut the other rows of a batch."""
        budget = dict(zip(idx, self._budgets([encoded[i] for i in idx], config.max_new_tokens)))
        pending = []
        for b in plan_batches([encoded[i] for i in idx], self.batch_size, self.max_batch_tokens):
            rows = [idx[j] for j in b.indices]
            if all(budget[i] == config.max_new_tokens for i in rows):
                pending.append(Batch(rows, b.shared_prefix))
            else:
                pending += [Batch([i], b.shared_prefix) for i in rows]
        while pending:
            batch = pending.pop(0)
            try:
                outputs = self._generate_batch([encoded[i] for i in batch.indices], config, batch.shared_prefix,
                                               min(budget[i] for i in batch.indices))
            except self.torch.cuda.OutOfMemoryError:
                if len(batch.indices) == 1:
                    raise
                # auto batch size: halve, split this batch and go on
                self.batch_size = max(1, len(batch.indices) // 2)
                self.torch.cuda.empty_cache()
                half = self.batch_size
                pending[:0] = [Batch(batch.indices[:half], batch.shared_prefix), Batch(batch.indices[half:], batch.shared_prefix)]
                continue
            yield from zip(batch.indices, outputs)

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """KV cache of a shared prompt prefix, computed once per prefix."""
        key = tuple(prefix)
        if self._prefix_key != key:
            with self.torch.inference_mode():
                ids = self.torch.tensor([prefix], device=self.device)
                self._prefix_kv = self.model(input_ids=ids, use_cache=True).past_key_values
            self.stats["prefix_prefills"] += 1
            self.stats["prefill_tokens"] += len(prefix)
            self._prefix_key = key
        return copy.deepcopy(self._prefix_kv)

    def _generate_batch(self, prompts: list[list[int]], config: GenerationConfig, shared: int, max_new_tokens: int) -> list[ModelOutput]:
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        # n samples per prompt become n rows, so one prefix cache fits all.
        rows = [p for p in prompts for _ in range(config.n)]
        width = max(map(len, rows))
        # Padding goes between the shared prefix and each row's own tokens;
        # positions come from the attention mask, so they stay exact.
        ids = torch.tensor([p[:shared] + [pad] * (width - len(p)) + p[shared:] for p in rows], device=self.device)
        mask = torch.tensor([[1] * shared + [0] * (width - len(p)) + [1] * (len(p) - shared) for p in rows], device=self.device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
        )
        if shared:
            cache = self._prefix_cache(prompts[0][:shared])
            cache.batch_repeat_interleave(len(rows))
            kwargs["past_key_values"] = cache
        if config.stop:
            # Ends each row as soon as its own text contains a stop string.
            kwargs.update(stop_strings=config.stop, tokenizer=self.tokenizer)
        if config.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=config.temperature, top_p=config.top_p, top_k=None)
            if config.seed is not None:
                torch.manual_seed(config.seed)
        if self.static_cache and not shared:
            kwargs["cache_implementation"] = "static"
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, width:].tolist()
        outputs = [self._output(len(p), new[row * config.n : (row + 1) * config.n], config.stop) for row, p in enumerate(prompts)]
        self.stats["generate_calls"] += 1
        self.stats["prefill_tokens"] += sum(len(p) - shared for p in rows)
        self.stats["generated"] += sum(o.completion_tokens + o.finish_reasons.count("eos") for o in outputs)  # as the engine counts
        return outputs

    def _output(self, prompt_tokens: int, sequences: list[list[int]], stops: Sequence[str]) -> ModelOutput:
        """A ModelOutput from the new token ids of each of a prompt's completions.

        Each sequence is cut at its first EOS and its text at the first stop
        string; the finish reason says which ended it ("length" otherwise).
        """
        eos = self._eos()
        texts, reasons, n_tokens = [], [], 0
        for seq in sequences:
            end = next((j for j, t in enumerate(seq) if t in eos), None)
            tokens = seq if end is None else seq[:end]
            text, stopped = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), stops)
            n_tokens += len(tokens)
            texts.append(text)
            reasons.append("stop" if stopped else "eos" if end is not None else "length")
        return ModelOutput(completions=texts, finish_reasons=reasons, prompt_tokens=prompt_tokens, completion_tokens=n_tokens)

    # -- log-likelihood --------------------------------------------------------

    def loglikelihood(self, requests: Sequence[ChoiceRequest]) -> Iterator[tuple[int, LoglikelihoodResult | RequestFailure]]:
        """Score every continuation of a request against one forward pass of its context.

        The context is run once; its KV cache is repeated across the options,
        which are then scored in a single batched pass (prefix reuse).  A
        request whose context and longest continuation pass the model's
        context is a RequestFailure (not silently left-truncated, as
        lm-evaluation-harness does).
        """
        torch = self.torch
        limit = self.context_length
        for i, req in enumerate(requests):
            ctx_ids, conts = self._split_tokens(req)
            longest = len(ctx_ids) + max(map(len, conts))
            if limit is not None and longest > limit:
                yield i, RequestFailure(f"context and continuation are {longest} tokens; the model's context holds {limit}")
                continue
            with torch.inference_mode():
                ctx = torch.tensor([ctx_ids[:-1]], device=self.device)
                cache = None
                if ctx.shape[1] > 0:
                    cache = self.model(input_ids=ctx, use_cache=True).past_key_values
                    self.stats["forward_passes"] += 1
                k = len(conts)
                width = max(map(len, conts)) + 1
                pad = self.tokenizer.pad_token_id
                # Each row: last context token + continuation, right-padded.
                rows = [[ctx_ids[-1]] + c + [pad] * (width - 1 - len(c)) for c in conts]
                ids = torch.tensor(rows, device=self.device)
                mask = torch.ones(k, len(ctx_ids) - 1 + width, dtype=torch.long, device=self.device)
                for r, c in enumerate(conts):
                    mask[r, len(ctx_ids) + len(c) :] = 0
                if cache is not None:
                    cache.batch_repeat_interleave(k)
                logits = self.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=False).logits
                self.stats["forward_passes"] += 1
                logprobs = torch.log_softmax(logits.float(), dim=-1)
            lps, greedy = [], []
            for r, c in enumerate(conts):
                target = torch.tensor(c, device=self.device)
                token_lps = logprobs[r, : len(c)].gather(-1, target[:, None]).squeeze(-1)
                lps.append(float(token_lps.sum()))
                greedy.append(bool((logprobs[r, : len(c)].argmax(-1) == target).all()))
            yield i, LoglikelihoodResult(logprobs=lps, is_greedy=greedy, token_counts=[len(c) for c in conts])

    def _split_tokens(self, req: ChoiceRequest) -> tuple[list[int], list[list[int]]]:
        """Token ids of the context and of each continuation (see split_continuations)."""
        def tokenize(text: str, add_special: bool) -> list[int]:
            return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

        text, special = self.render(req.context)
        return split_continuations(tokenize, text, special, req.continuations)

    def close(self) -> None:
        self.model = None


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _choice(options: BackendOptions, key: str, allowed: tuple[str, ...]) -> str:
    """``-M key=value`` if ``value`` is one of ``allowed`` (default: the first); raises UserError otherwise."""
    value = str(options.extra.get(key, allowed[0]))
    if value not in allowed:
        raise UserError(f"-M {key}={value}: use {', '.join(allowed[:-1])} or {allowed[-1]}")
    return value


def _non_negative_int(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise UserError(f"-M {name}={value}: expected a whole number >= 0")
    return number


def _pick_device(requested: str, torch: Any) -> str:
    """The device the model goes to; a bad or absent one fails here, before the load."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device '{requested}' is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("--device mps requested but MPS is not available")
    elif device.type != "cpu":
        raise UserError(f"--device '{requested}': the hf backend runs on cpu, cuda or cuda:N")
    return requested


def _pick_dtype(requested: str, device: str, torch: Any) -> Any:
    if requested == "auto":
        # fp32 on CPU: bf16 matmuls crash on AMX CPUs without ONEDNN_MAX_CPU_ISA.
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[requested]
    except KeyError:
        raise UserError(f"unknown dtype '{requested}': use auto, float32, bfloat16 or float16") from None
