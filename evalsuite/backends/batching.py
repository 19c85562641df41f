"""Planning local generation: shared prefixes first, then length.

Few-shot prompts of one subtask share a long prefix (the demonstrations are
~90% of a BBH chain-of-thought prompt).  Prompts are clustered by common token
prefix so each cluster's prefix is prefilled once and its KV cache reused.

:func:`admission_order` orders prompts for continuous batching
(evalsuite.backends.hf_engine).  :func:`plan_batches` cuts static batches for
``model.generate``, the fallback for models the engine cannot run: prompts
that share nothing are pooled and sorted longest-first (an OOM shows at
once, padding stays small), and a token budget caps rows x width, because
attention over padded long prompts is what makes CPU prefill collapse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Batch:
    indices: list[int]
    shared_prefix: int  # tokens every row shares (0: plain left padding)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prefix_clusters(prompts: Sequence[Sequence[int]], min_prefix: int = 64) -> list[list[int]]:
    """Indices grouped into runs of prompts that share at least ``min_prefix`` leading tokens."""
    order = sorted(range(len(prompts)), key=lambda i: tuple(prompts[i]))
    clusters: list[list[int]] = []
    for i in order:
        if clusters and common_prefix(prompts[clusters[-1][-1]], prompts[i]) >= min_prefix:
            clusters[-1].append(i)
        else:
            clusters.append([i])
    return clusters


def shared_prefix(prompts: Sequence[Sequence[int]], cluster: Sequence[int]) -> int:
    """Tokens every prompt of ``cluster`` shares, leaving each at least one token of its own to prefill."""
    return min(
        min(common_prefix(prompts[cluster[0]], prompts[i]) for i in cluster),
        min(len(prompts[i]) for i in cluster) - 1,
    )


def admission_order(prompts: Sequence[Sequence[int]], min_prefix: int = 64) -> list[tuple[int, int]]:
    """``(prompt index, shared prefix length)`` in the order continuous batching admits them.

    Prompts sharing a prefix come together, so its KV is computed once and
    reused while the cluster is admitted; clusters and the prompts in them go
    longest first, so rows decoded together have similar lengths and the
    attended width wastes little.
    """
    groups = []
    for cluster in prefix_clusters(prompts, min_prefix):
        prefix = shared_prefix(prompts, cluster) if len(cluster) > 1 else 0
        groups.append((sorted(cluster, key=lambda i: -len(prompts[i])), prefix))
    groups.sort(key=lambda g: -len(prompts[g[0][0]]))
    return [(i, prefix) for rows, prefix in groups for i in rows]


def plan_batches(prompts: Sequence[Sequence[int]], max_rows: int, max_tokens: int, min_prefix: int = 64) -> list[Batch]:
    """Static batches for ``model.generate``: shared-prefix clusters, then a length-sorted pool."""
    clusters = prefix_clusters(prompts, min_prefix)
    # Every batch decodes as long as its longest row, so a small cluster run
    # on its own costs a whole extra decode pass for little prefill saved:
    # only clusters that fill half a batch keep their shared prefix.
    shared = [c for c in clusters if len(c) > 1 and len(c) * 2 >= max_rows]
    pool = [i for c in clusters if not (len(c) > 1 and len(c) * 2 >= max_rows) for i in c]

    batches: list[Batch] = []
    for cluster in sorted(shared, key=lambda c: -max(len(prompts[i]) for i in c)):
        prefix = shared_prefix(prompts, cluster)
        rows = sorted(cluster, key=lambda i: -len(prompts[i]))
        batches += [Batch(b, prefix) for b in _cut(rows, prompts, max_rows, max_tokens, prefix)]
    pool.sort(key=lambda i: -len(prompts[i]))
    batches += [Batch(b, 0) for b in _cut(pool, prompts, max_rows, max_tokens, 0)]
    return batches


def _cut(rows: list[int], prompts: Sequence[Sequence[int]], max_rows: int, max_tokens: int, prefix: int) -> list[list[int]]:
    """Consecutive batches of longest-first rows within the row and token caps."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in rows:
        width = len(prompts[current[0]] if current else prompts[i]) - prefix
        if current and (len(current) + 1 > max_rows or (len(current) + 1) * width > max_tokens):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out
