"""Continuous batching for local transformers models: a finished row is refilled at once.

A static batch decodes as long as its longest row; on BBH chain-of-thought
44 % of its row-steps were padding.  Here every row owns a *slot* of a
preallocated KV cache.  Each decode step runs all live rows together; a row
that ends (EOS, a stop string, its token limit) leaves at once, and the next
prompt is prefilled into a free slot before the following step.

Rows keep their own positions (no left padding): a row writes its next
key/value at column ``length`` of its slot, in place, so a step costs the
model plus one read of the live KV, not a copy of the whole cache as
``DynamicCache``'s per-step concatenation does.  Slots live in *buckets* by
the width a row can reach (prompt + max new tokens, in classes a factor
sqrt(2) apart), and decode attention runs once per bucket over the columns
its rows use: a 2,500-token prompt does not make every short row attend
over 2,500 padded columns, nor reserve them.

Prefill goes through the model's own cache and mask code (a standard
``DynamicCache``), one prompt at a time, optionally continuing from the KV of
a few-shot prefix that a subtask's prompts share.  Decode attention is the
registered attention function ``evalsuite_slots``: exactly transformers'
SDPA path unless a decode step of this engine passes its plan.

Greedy rows speculate (prompt-lookup decoding): a step also feeds a row the
tokens that followed the latest earlier occurrence of its last few tokens
and keeps those the model itself predicts.  A step costs the weights once
plus a read of each row's KV, so checking 4 guesses costs little more than
decoding 1, and chain-of-thought answers, which restate their question, keep
most of them.  Greedy outputs equal ``model.generate``'s (tests compare them).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SLOT_ATTENTION = "evalsuite_slots"
_NO_MASK = torch.zeros(1, 1, 1, 1)

# Knobs of a generation config that change the logits beyond temperature and
# top-p; a model whose defaults set any of them goes through model.generate().
_PROCESSOR_KNOBS = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
}


def supports(model: Any) -> str | None:
    """Why ``model`` cannot use the slot engine, or None when it can.

    The engine needs a decoder-only model whose every layer attends to the
    full past (no sliding window, recurrent state or cross-attention) through
    SDPA, a DynamicCache with per-layer ``keys``/``values``, and a generation
    config that adds no logits processors of its own.
    """
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        return f"layer types {sorted(layer_types)}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    if getattr(config, "_attn_implementation", "sdpa") not in ("sdpa", SLOT_ATTENTION):
        return f"attention implementation {config._attn_implementation}"
    if not hasattr(DynamicCache(config=config), "layers"):
        return "transformers without cache layers"
    gen = model.generation_config
    for knob, neutral in _PROCESSOR_KNOBS.items():
        if getattr(gen, knob, None) not in neutral:
            return f"generation config sets {knob}"
    return None


def slot_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                   dropout: float = 0.0, scaling: float | None = None, slot_step: "Step | None" = None,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, or, in a slot-engine decode step, SDPA per bucket of slots."""
    if slot_step is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    return slot_step.attend(module.layer_idx, query, scaling), None


AttentionInterface.register(SLOT_ATTENTION, slot_attention)
AttentionMaskInterface.register(SLOT_ATTENTION, sdpa_mask)  # prefill masks exactly as for "sdpa"


def width_class(n: int) -> int:
    """Slot width for a row that can reach ``n`` tokens: 64·√2^k, the smallest ≥ n."""
    k = max(0, math.ceil(2 * math.log2(max(n, 1) / 64) - 1e-9))
    return int(math.ceil(64 * 2 ** (k / 2) / 16) * 16)


@dataclass
class Row:
    """One completion being generated."""

    request: int  # index of the prompt
    sample: int  # which of its n completions
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None  # "eos" | "stop" | "length" once done
    generator: torch.Generator | None = None  # sampling only
    bucket: "Bucket | None" = None
    prefix: "Prefix | None" = None  # shared KV before the slot's own columns
    drafter: "NgramDrafter | None" = None  # greedy rows, when speculation is on


class Prefix:
    """The KV of a few-shot prefix that several rows share, stored once: ``[kv_heads, length, head_dim]`` per layer.

    Rows built on it keep only their own tokens in their slots; decode
    attention reads the prefix once per step for all of them and merges the
    two parts by their log-sum-exp (as FlashAttention merges blocks).
    """

    def __init__(self, past: Any) -> None:
        self.keys = [layer.keys[0] for layer in past.layers]
        self.values = [layer.values[0] for layer in past.layers]
        self.length = self.keys[0].shape[-2]


class Bucket:
    """Slots of one width: per layer, keys and values ``[capacity, kv_heads, width, head_dim]``.

    Live rows occupy slots ``0..len(rows)-1``; a leaving row's slot takes the
    last row's data, so a step reads a prefix of the batch dimension.
    """

    def __init__(self, cache: "SlotCache", width: int) -> None:
        self.cache, self.width = cache, width
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.capacity = 0
        self.lengths = torch.zeros(0, dtype=torch.long, device=cache.device)
        self.rows: list[Row] = []

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` slots (a quarter more, so growth copies seldom)."""
        if rows <= self.capacity:
            return
        capacity = rows + rows // 4
        c = self.cache
        shape = (capacity, c.kv_heads, self.width, c.head_dim)
        live = len(self.rows)
        for store in (self.keys, self.values):
            for i in range(c.n_layers):
                new = torch.zeros(shape, dtype=c.dtype, device=c.device)
                if i < len(store):
                    new[:live] = store[i][:live]
                    store[i] = new
                else:
                    store.append(new)
        lengths = torch.zeros(capacity, dtype=torch.long, device=c.device)
        lengths[:live] = self.lengths[:live]
        self.lengths, self.capacity = lengths, capacity

    def add(self, row: Row, past: Any) -> None:
        """Copy a prefilled DynamicCache (batch row 0), less the row's shared prefix, into a new slot for ``row``."""
        slot = len(self.rows)
        self.reserve(slot + 1)
        skip = row.prefix.length if row.prefix else 0
        n = past.layers[0].keys.shape[-2] - skip
        for i, layer in enumerate(past.layers):
            self.keys[i][slot, :, :n] = layer.keys[0, :, skip:]
            self.values[i][slot, :, :n] = layer.values[0, :, skip:]
        self.lengths[slot] = n
        self.rows.append(row)
        row.bucket = self

    def remove(self, row: Row) -> None:
        slot, last = self.rows.index(row), len(self.rows) - 1
        if slot != last:
            n = int(self.lengths[last])
            for store in (self.keys, self.values):
                for buf in store:
                    buf[slot, :, :n] = buf[last, :, :n]
            self.lengths[slot] = n
            self.rows[slot] = self.rows[last]
        self.rows.pop()
        row.bucket = None


@dataclass
class Part:
    """One bucket's share of a decode step: its rows ``start:stop`` (their tokens ``first:last``), each
    with up to ``width`` query tokens, attending ``span`` own columns."""

    bucket: Bucket
    start: int
    stop: int
    first: int
    last: int
    width: int  # the most query tokens of a row in this part (1 without drafts)
    span: int
    mask: torch.Tensor  # additive, [rows, 1, 1 or heads/kv_heads * width, span]
    kv_rows: torch.Tensor  # per (token, KV head): where its key/value goes in the bucket's [capacity * kv_heads * width, head_dim]
    padded: torch.Tensor | None  # per padded query [rows * width]: its token (pads repeat the row's first)
    unpadded: torch.Tensor | None  # per token: its place among the padded queries
    lengths: torch.Tensor  # the rows' own columns before this step
    groups: list[tuple["Prefix", torch.Tensor]]  # rows (part-local) continuing each shared prefix


class Step:
    """The plan of one decode step over all live rows, ordered bucket by bucket.

    Each row feeds its last token and, when speculating, its draft tokens;
    the step's tokens are packed into one sequence ``[1, T]`` (a row's tokens
    are contiguous), so the model's projections and MLP compute no padding.
    Only attention pads a bucket's rows to its longest run of queries, which
    costs little: it is bound by reading the KV, once per row.
    """

    def __init__(self, cache: "SlotCache", queries: Sequence[int] | None = None) -> None:
        self.parts: list[Part] = []
        self.kv_heads = cache.kv_heads
        positions = []
        start = first = 0
        for bucket in cache.live_buckets():
            n = len(bucket.rows)
            q = torch.tensor(queries[start : start + n] if queries else [1] * n, device=cache.device)
            part, part_positions = self._plan(cache, bucket, start, first, q)
            self.parts.append(part)
            positions.append(part_positions)
            start, first = part.stop, part.last
        self.positions = torch.cat(positions)[None, :]  # [1, T]: each token's own position
        self.attended = sum((p.stop - p.start) * p.span + sum(g.length for g, _ in p.groups) for p in self.parts)

    @staticmethod
    def _plan(cache: "SlotCache", bucket: Bucket, start: int, first: int, q: torch.Tensor) -> tuple[Part, torch.Tensor]:
        """A bucket's Part, its rows feeding ``q[i]`` tokens from token ``first`` on, and those tokens' positions."""
        device, n = cache.device, len(q)
        width, tokens = int(q.max()), int(q.sum())
        lengths = bucket.lengths[:n].clone()
        span = int((lengths + q).max())
        starts = torch.cumsum(q, 0) - q  # each row's first token, within the part
        row = torch.repeat_interleave(torch.arange(n, device=device), q)  # per token: its row
        offset = torch.arange(tokens, device=device) - starts[row]  # per token: its place in its row
        columns = lengths[row] + offset  # per token: where its key/value goes
        # Query j of a row sees its own columns up to length + j.
        limit = lengths[:, None] + torch.arange(width, device=device)[None, :]  # [n, width]
        visible = torch.arange(span, device=device)[None, None, :] <= limit[:, :, None]
        # Additive float mask: on CPU, SDPA runs ~2x faster with it than with a boolean one.
        mask = torch.zeros(visible.shape, dtype=cache.dtype, device=device)
        mask.masked_fill_(~visible, torch.finfo(cache.dtype).min)
        # Live rows hold slots 0..n-1, so a token's slot is its row.
        kv_rows = ((row[:, None] * cache.kv_heads + torch.arange(cache.kv_heads, device=device)) * bucket.width
                   + columns[:, None]).reshape(-1)
        padded = unpadded = None
        if width == 1:
            mask = mask[:, None]  # [n, 1, 1, span], shared by a row's heads
        else:  # queries ordered (head, j) within a KV head
            mask = mask.repeat(1, cache.heads // cache.kv_heads, 1)[:, None]
            j = torch.arange(width, device=device)[None, :]
            padded = (first + starts[:, None] + torch.where(j < q[:, None], j, 0)).reshape(-1)
            unpadded = row * width + offset
        groups: dict[int, tuple[Prefix, list[int]]] = {}
        for i, r in enumerate(bucket.rows):
            if r.prefix is not None:
                groups.setdefault(id(r.prefix), (r.prefix, []))[1].append(i)
        shared = torch.tensor([r.prefix.length if r.prefix else 0 for r in bucket.rows], device=device)
        part = Part(bucket, start, start + n, first, first + tokens, width, span, mask, kv_rows,
                    padded, unpadded, lengths, [(prefix, torch.tensor(idx, device=device)) for prefix, idx in groups.values()])
        return part, columns + shared[row]

    def write(self, layer: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Put this step's keys and values ``[1, kv_heads, T, head_dim]`` in each token's slot and column.

        ``index_copy_``/``index_select`` here and in ``attend``, not advanced
        indexing: on CPU the latter took 10-25x longer at these sizes (its
        TensorIterator wakes the thread pool for a few kilobytes)."""
        dim = key_states.shape[-1]
        for p in self.parts:
            for store, states in ((p.bucket.keys, key_states), (p.bucket.values, value_states)):
                rows = states[0, :, p.first : p.last].transpose(0, 1).reshape(-1, dim)  # [(token, kv head), dim]
                store[layer].view(-1, dim).index_copy_(0, p.kv_rows, rows)

    def attend(self, layer: int, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """Attention output ``[1, T, heads, head_dim]`` of the step's queries ``[1, heads, T, head_dim]``.

        Queries are packed per KV head (``[rows, kv_heads, heads/kv_heads * width, dim]``,
        as transformers does for GQA); each bucket attends over its own columns;
        rows on a shared prefix then merge in the prefix's attention, computed
        once per prefix and bucket for all its rows (by their log-sum-exp, as
        FlashAttention merges blocks).
        """
        _, heads, _, dim = query.shape
        kv = self.kv_heads
        outs = []
        for p in self.parts:
            n, w = p.stop - p.start, p.width
            if w == 1:
                q = query[0, :, p.first : p.last].transpose(0, 1).reshape(n, kv, heads // kv, dim)
            else:
                q = query[0].index_select(1, p.padded).reshape(heads, n, w, dim).transpose(0, 1).reshape(n, kv, -1, dim)
            keys = p.bucket.keys[layer][:n, :, : p.span]
            values = p.bucket.values[layer][:n, :, : p.span]
            if not p.groups:
                out = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=p.mask, scale=scaling)
            else:
                out, lse = attention_lse(q, keys, values, p.mask, scaling)
                for prefix, idx in p.groups:
                    m = len(idx)
                    # All rows' queries against the prefix at once: [1, kv, m * queries, dim].
                    shared, shared_lse = attention_lse(q.index_select(0, idx).transpose(0, 1).reshape(1, kv, -1, dim),
                                                       prefix.keys[layer][None], prefix.values[layer][None], None, scaling)
                    shared = shared.reshape(kv, m, -1, dim).transpose(0, 1)
                    shared_lse = shared_lse.reshape(kv, m, -1).transpose(0, 1)
                    own, own_lse = out.index_select(0, idx), lse.index_select(0, idx)
                    total = torch.logaddexp(own_lse, shared_lse)
                    out.index_copy_(0, idx, (own * (own_lse - total).exp()[..., None]
                                             + shared * (shared_lse - total).exp()[..., None]).to(out.dtype))
            # [n, kv, heads/kv * w, dim] -> one row per token: [tokens, heads, dim]
            out = out.reshape(n, heads, w, dim).transpose(1, 2).reshape(n * w, heads, dim)
            outs.append(out if w == 1 else out.index_select(0, p.unpadded))
        return torch.cat(outs)[None]

    def advance(self, accepted: Sequence[int]) -> None:
        """Move each row's length past its last token and the ``accepted[i]`` draft tokens that follow it."""
        counts = torch.tensor(accepted, device=self.positions.device) + 1
        for p in self.parts:
            p.bucket.lengths[: p.stop - p.start] = p.lengths + counts[p.start : p.stop]


def attention_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                  scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention and the log-sum-exp of its scores, ``[..., q, dim]`` and ``[..., q]``.

    On CPU this is the kernel behind ``F.scaled_dot_product_attention`` (same
    output, bit for bit); elsewhere the plain formula.
    """
    if query.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=mask, scale=scale)
        return out, lse
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * (scale if scale is not None else query.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores + mask
    lse = scores.logsumexp(-1)
    return torch.matmul((scores - lse[..., None]).exp().to(value.dtype), value), lse


class SlotCache(Cache):
    """The decode-time KV of every live row, in buckets of slots (see the module docstring).

    Passed to the model as its cache; ``update`` writes this step's keys and
    values in place and the attention function reads them through the step.
    """

    def __init__(self, model: Any) -> None:
        super().__init__(layers=[])
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.dtype, self.device = model.dtype, model.device
        self.buckets: dict[int, Bucket] = {}
        self.step: Step | None = None

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.n_layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    def reserved_tokens(self) -> int:
        """Columns held by live rows: their slots' full width, and each shared prefix once."""
        prefixes = {id(r.prefix): r.prefix.length for b in self.buckets.values() for r in b.rows if r.prefix}
        return sum(b.width * len(b.rows) for b in self.buckets.values()) + sum(prefixes.values())

    def live_buckets(self) -> list[Bucket]:
        return [b for _, b in sorted(self.buckets.items()) if b.rows]

    def live_count(self) -> int:
        return sum(len(b.rows) for b in self.buckets.values())

    def live_rows(self) -> list[Row]:
        return [r for b in self.live_buckets() for r in b.rows]

    def bucket(self, reach: int) -> Bucket:
        width = width_class(reach)
        if width not in self.buckets:
            self.buckets[width] = Bucket(self, width)
        return self.buckets[width]

    def release_empty(self) -> None:
        """Free the buffers of buckets without rows."""
        for width in [w for w, b in self.buckets.items() if not b.rows]:
            del self.buckets[width]

    def begin_step(self, queries: Sequence[int] | None = None) -> Step:
        """Plan a step in which live row i feeds ``queries[i]`` tokens (1 each by default)."""
        self.step = Step(self, queries)
        return self.step

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys/values ``[1, kv_heads, T, head_dim]`` at each token's own column."""
        self.step.write(layer_idx, key_states, value_states)
        return key_states, value_states  # attention reads the slots through the step

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max((p.span - 1 for p in self.step.parts), default=0) if self.step else 0

    def __len__(self) -> int:
        return self.n_layers


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy when ``temperature`` is 0.

    ``top_p`` filtering follows transformers' TopPLogitsWarper (keep the
    smallest set of most likely tokens whose probability reaches ``top_p``).
    Each row draws from its own generator, seeded from ``seed``, the prompt's
    tokens and the completion number: a seeded sample does not depend on the
    other rows of its batch, nor on the order of the requests, so a resumed
    run samples what an uninterrupted one would have.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def generator(self, prompt: Sequence[int], sample: int, device: Any) -> torch.Generator | None:
        if self.temperature == 0.0:
            return None
        g = torch.Generator(device=device)
        if self.seed is None:
            g.seed()
        else:
            key = hashlib.sha256(repr((self.seed, sample, list(prompt))).encode()).digest()
            g.manual_seed(int.from_bytes(key[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)
        return g

    def choose(self, logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
        """Next token of each row from its logits ``[B, vocab]``."""
        if self.temperature == 0.0:
            return logits.argmax(-1).tolist()
        scores = logits.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            drop = ordered.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[:, -1] = False  # keep at least one token
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        probs = scores.softmax(-1)
        return [int(torch.multinomial(probs[b], 1, generator=row.generator)) for b, row in enumerate(rows)]


class NgramDrafter:
    """Prompt-lookup drafts for one greedy row (Saxena, "Prompt Lookup Decoding", 2023; transformers'
    ``prompt_lookup_num_tokens``, vLLM's ``ngram`` speculator).

    The draft is what followed the latest earlier occurrence of the row's last
    ``n`` tokens (``n`` from ``max_ngram`` down to ``min_ngram``) in its prompt
    and completion.  A greedy step verifies the draft exactly: a draft token is
    kept only while it equals the model's argmax, so the output is the one
    token-by-token decoding gives.  Chain-of-thought answers restate their
    question, and small models loop; both are found here.
    """

    def __init__(self, prompt: Sequence[int], max_ngram: int = 3, min_ngram: int = 2) -> None:
        self.sizes = range(max_ngram, min_ngram - 1, -1)
        self.seq: list[int] = []
        # Per n: an n-gram -> the index just after its latest occurrence that has a next token.
        self.index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in self.sizes}
        self.extend(prompt)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.seq.append(token)
            end = len(self.seq) - 1  # the n-grams ending before this token now have a successor
            for n, index in self.index.items():
                if end >= n:
                    index[tuple(self.seq[end - n : end])] = end

    def propose(self, limit: int) -> list[int]:
        """Up to ``limit`` draft tokens (none when no n-gram recurs)."""
        if limit <= 0:
            return []
        for n in self.sizes:
            end = self.index[n].get(tuple(self.seq[-n:]))
            if end is not None:
                return self.seq[end : end + limit]
        return []


class Finisher:
    """Decides when a row ends: an EOS token, a stop string in its text, or its prompt's token budget."""

    def __init__(self, tokenizer: Any, eos: set[int], stops: Sequence[str], budgets: Sequence[int]) -> None:
        self.tokenizer, self.eos, self.stops, self.budgets = tokenizer, eos, [s for s in stops if s], budgets

    def __call__(self, row: Row) -> str | None:
        if row.tokens[-1] in self.eos:
            return "eos"
        if self.stops:
            # A stop string can end inside a token, so the text is checked, as
            # transformers' StopStringCriteria does (over the completion only).
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            if any(s in text for s in self.stops):
                return "stop"
        if len(row.tokens) >= self.budgets[row.request]:
            return "length"
        return None


class SlotEngine:
    """Runs prompts through a transformers model with continuous batching.

    At most ``max_rows`` rows decode together, and their slots hold at most
    ``kv_bytes`` of KV (rows x slot width); a prompt waits until both allow
    it.  The KV of the last ``prefix_slots`` shared prefixes is kept.  With
    ``draft_tokens`` > 0, greedy rows speculate: each step also verifies up to
    that many prompt-lookup draft tokens per row (:class:`NgramDrafter`).
    Sets the model's attention implementation to ``evalsuite_slots`` (SDPA
    outside this engine's decode steps).
    """

    def __init__(self, model: Any, eos: set[int], max_rows: int, kv_bytes: int, stats: Counter[str] | None = None,
                 prefix_slots: int = 2, draft_tokens: int = 0) -> None:
        self.model, self.eos = model, eos
        self.max_rows, self.kv_bytes = max_rows, kv_bytes
        self.draft_tokens = draft_tokens
        model.set_attn_implementation(SLOT_ATTENTION)
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.prefix_slots = prefix_slots
        # For tests and benches: prefills (and their tokens, ms), prefix_prefills, decode_steps (and
        # their ms), row_steps (rows x steps), attended (KV columns read, padding included), kv_used,
        # drafted and accepted (draft tokens proposed and kept), generated (tokens appended to rows).
        self.stats: Counter[str] = Counter() if stats is None else stats
    # -- prefill ---------------------------------------------------------------

    def _prefix(self, prefix: Sequence[int]) -> tuple[Any, Prefix]:
        """(DynamicCache, Prefix) of a shared prefix, prefilled once while it stays among the last few."""
        key = tuple(prefix)
        if key not in self.prefixes:
            ids = torch.tensor([list(prefix)], device=self.model.device)
            past = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
            self.prefixes[key] = (past, Prefix(past))
            self.stats["prefix_prefills"] += 1
            self.stats["prefill_tokens"] += len(prefix)
            while len(self.prefixes) > self.prefix_slots:
                self.prefixes.popitem(last=False)
        self.prefixes.move_to_end(key)
        return self.prefixes[key]

    def _prefill(self, prompt: Sequence[int], shared: int) -> tuple[Any, torch.Tensor, Prefix | None]:
        """(DynamicCache of the whole prompt, logits of its last position [vocab], the shared Prefix if any)."""
        start = time.perf_counter()
        kwargs: dict[str, Any] = {}
        prefix = None
        if shared:
            past, prefix = self._prefix(prompt[:shared])
            kwargs[self.cache_kw] = copy.deepcopy(past)
        ids = torch.tensor([list(prompt[shared:])], device=self.model.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **kwargs)
        self.stats["prefill_ms"] += round(1000 * (time.perf_counter() - start))
        self.stats["prefills"] += 1
        self.stats["prefill_tokens"] += len(prompt) - shared
        return out.past_key_values, out.logits[0, -1], prefix

    # -- the loop --------------------------------------------------------------

    def run(
        self,
        prompts: Sequence[Sequence[int]],
        order: Sequence[tuple[int, int]],
        n: int,
        budgets: Sequence[int],
        sampling: Sampling,
        finisher: Callable[[Row], str | None],
    ) -> Iterator[tuple[int, list[Row]]]:
        """Yield ``(prompt index, its n finished rows)`` as prompts complete.

        ``order`` lists ``(prompt index, shared prefix length)`` in admission
        order; prompts with a shared prefix continue from its cached KV.
        ``budgets[i]``: the most new tokens prompt i's rows may get.
        """
        cache = SlotCache(self.model)
        done: dict[int, list[Row]] = {}
        queue = list(order)[::-1]  # next prompt last
        with torch.inference_mode():
            while queue or cache.live_count():
                while queue and self._admits(cache, n, len(prompts[queue[-1][0]]) - queue[-1][1] + budgets[queue[-1][0]]):
                    index, shared = queue.pop()
                    past, logits, prefix = self._prefill(prompts[index], shared)
                    bucket = cache.bucket(len(prompts[index]) - shared + budgets[index])
                    for j in range(n):
                        row = Row(index, j, generator=sampling.generator(prompts[index], j, self.model.device), prefix=prefix)
                        if self.draft_tokens and row.generator is None:
                            row.drafter = NgramDrafter(prompts[index])
                        bucket.add(row, past)
                        self.stats["generated"] += self._extend(row, sampling.choose(logits[None], [row]), finisher)
                    del past
                    yield from self._retire(bucket.rows[-n:], done, n)
                if not cache.live_count():
                    continue
                rows = cache.live_rows()
                start = time.perf_counter()
                drafts = [r.drafter.propose(min(self.draft_tokens, budgets[r.request] - len(r.tokens) - 1)) if r.drafter else []
                          for r in rows]
                step = cache.begin_step([1 + len(d) for d in drafts])
                ids = torch.tensor([[t for r, d in zip(rows, drafts) for t in (r.tokens[-1], *d)]], device=self.model.device)
                # Any 4-D mask makes transformers skip building one; the step carries the real masks.
                out = self.model(input_ids=ids, position_ids=step.positions, attention_mask=_NO_MASK, use_cache=True,
                                 logits_to_keep=0, slot_step=step, **{self.cache_kw: cache})
                cache.step = None
                logits = out.logits[0]  # [T, vocab]
                firsts = list(accumulate(1 + len(d) for d in drafts[:-1]))  # each row's first token
                firsts.insert(0, 0)
                chosen = sampling.choose(logits.index_select(0, torch.tensor(firsts, device=logits.device)), rows)
                # Greedy verification reads the argmax after each draft token (one pass over all positions).
                best = logits.argmax(-1).tolist() if any(drafts) else []
                accepted = []
                for row, first, token, draft in zip(rows, firsts, chosen, drafts):
                    new = [token]
                    if draft:
                        # Keep draft tokens while each equals the model's argmax before it.
                        for guess, following in zip(draft, best[first + 1 : first + 1 + len(draft)]):
                            if guess != new[-1]:
                                break
                            new.append(following)
                    accepted.append(len(new) - 1)
                    self.stats["generated"] += self._extend(row, new, finisher)
                step.advance(accepted)
                self.stats["decode_ms"] += round(1000 * (time.perf_counter() - start))
                self.stats["decode_steps"] += 1
                self.stats["row_steps"] += len(rows)
                self.stats["attended"] += step.attended
                self.stats["kv_used"] += int(step.positions.sum()) + int(ids.shape[1])
                self.stats["drafted"] += sum(map(len, drafts))
                self.stats["accepted"] += sum(accepted)
                yield from self._retire(rows, done, n)
                cache.release_empty()

    def _admits(self, cache: SlotCache, n: int, reach: int) -> bool:
        """Whether n more rows that can reach ``reach`` tokens fit the row and KV budgets (one prompt always may)."""
        live = cache.live_count()
        if live == 0:
            return True
        kv_tokens = self.kv_bytes // cache.bytes_per_token
        return live + n <= self.max_rows and cache.reserved_tokens() + n * width_class(reach) <= kv_tokens

    @staticmethod
    def _extend(row: Row, tokens: Sequence[int], finisher: Callable[[Row], str | None]) -> int:
        """Append a step's new tokens to a row, up to the one that finishes it; returns how many."""
        before = len(row.tokens)
        for token in tokens:
            row.tokens.append(token)
            row.finish = finisher(row)
            if row.finish is not None:
                break
        if row.drafter is not None and row.finish is None:
            row.drafter.extend(tokens)
        return len(row.tokens) - before

    def _retire(self, rows: list[Row], done: dict[int, list[Row]], n: int) -> Iterator[tuple[int, list[Row]]]:
        """Free the slots of finished rows; yield prompts whose n rows are all done."""
        for row in rows:
            if row.finish is None:
                continue
            row.bucket.remove(row)
            done.setdefault(row.request, []).append(row)
            if len(done[row.request]) == n:
                yield row.request, sorted(done.pop(row.request), key=lambda r: r.sample)
