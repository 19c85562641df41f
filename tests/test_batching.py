"""Batch planning: shared prefixes are grouped, budgets respected, nothing lost."""

from __future__ import annotations

import random

from evalsuite.backends.batching import common_prefix, plan_batches


def test_prefix_clusters_and_pool():
    rng = random.Random(0)
    shots_a, shots_b = list(range(100)), list(range(500, 600))
    prompts = [shots_a + [rng.randrange(1000, 2000) for _ in range(rng.randrange(3, 30))] for _ in range(10)]
    prompts += [shots_b + [rng.randrange(1000, 2000) for _ in range(rng.randrange(3, 30))] for _ in range(7)]
    prompts += [[rng.randrange(3000, 4000) for _ in range(rng.randrange(5, 50))] for _ in range(9)]
    batches = plan_batches(prompts, max_rows=4, max_tokens=10_000)
    seen = sorted(i for b in batches for i in b.indices)
    assert seen == list(range(len(prompts)))
    for b in batches:
        assert len(b.indices) <= 4
        if b.shared_prefix:
            assert b.shared_prefix >= 100
            assert all(common_prefix(prompts[b.indices[0]], prompts[i]) >= b.shared_prefix for i in b.indices)
            assert all(len(prompts[i]) > b.shared_prefix for i in b.indices)
    assert {i for b in batches if b.shared_prefix for i in b.indices} == set(range(17))
    pool = [i for b in batches if not b.shared_prefix for i in b.indices]
    assert [len(prompts[i]) for i in pool] == sorted((len(prompts[i]) for i in pool), reverse=True)


def test_small_clusters_join_the_pool():
    shots = list(range(100))
    prompts = [shots + [1000 + i] for i in range(3)] + [[2000 + i] * 50 for i in range(10)]
    batches = plan_batches(prompts, max_rows=16, max_tokens=100_000)
    assert len(batches) == 1 and batches[0].shared_prefix == 0 and len(batches[0].indices) == 13


def test_token_budget_limits_rows_of_long_prompts():
    prompts = [[i] * 2500 for i in range(5)] + [[100 + i] * 10 for i in range(20)]
    batches = plan_batches(prompts, max_rows=16, max_tokens=8192)
    for b in batches:
        width = max(len(prompts[i]) for i in b.indices)
        assert len(b.indices) == 1 or len(b.indices) * width <= 8192
    assert max(len(b.indices) for b in batches) == 16  # short prompts still batch fully
