"""Paired significance tests for comparing two runs sample by sample.

Pairing matters: two checkpoints answer the *same* items, so most of the
variance cancels. An unpaired z-test on the two means (what most harnesses
do) is far too conservative for small real changes and says nothing about
which items flipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class PairedResult:
    test: str  # "mcnemar-exact" | "paired-bootstrap" | "none"
    baseline: float  # weighted mean of the baseline per-sample values
    candidate: float
    delta: float  # candidate - baseline
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    discordant: tuple[int, int] | None = None  # (baseline-only passes, candidate-only passes)


def is_binary(*arrays: np.ndarray) -> bool:
    return all(bool(np.isin(a, (0.0, 1.0)).all()) for a in arrays)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b = pairs the baseline got right and the candidate wrong, c = the reverse.
    Under H0 each discordant pair is a fair coin, so min(b, c) ~ Binomial(b+c, 1/2)
    and, the distribution being symmetric, p = 2·P(X ≤ min(b, c)), capped at 1.
    Summed in log space with lgamma: exact to ~1e-12 for any count, and no
    scipy import (which alone takes seconds) on the CLI path.
    """
    m, k = b + c, min(b, c)
    if m == 0 or b == c:
        return 1.0
    log_terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2) for i in range(k + 1)]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * tail)


def paired_binary(base: np.ndarray, cand: np.ndarray, level: float = 0.95) -> PairedResult:
    """McNemar's exact test plus the Agresti–Min interval for the difference.

    Agresti–Min (2005) adds 1/2 to each cell of the paired 2×2 table before a
    Wald interval; unlike the plain Wald interval it keeps its coverage with
    a handful of flips (4 lost, 0 gained does not look significant) and,
    unlike an interval conditional on the number of flips, it does not
    collapse onto the point estimate when every flip goes one way.
    """
    n = len(base)
    b = int(((base == 1) & (cand == 0)).sum())
    c = int(((base == 0) & (cand == 1)).sum())
    delta = (c - b) / n
    b2, c2, n2 = b + 0.5, c + 0.5, n + 2
    d2 = (c2 - b2) / n2
    se = math.sqrt(max((b2 + c2) / n2 - d2**2, 0.0) / n2)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    lo, hi = max(-1.0, d2 - z * se), min(1.0, d2 + z * se)
    return PairedResult(
        test="mcnemar-exact",
        baseline=float(base.mean()),
        candidate=float(cand.mean()),
        delta=delta,
        ci_low=lo,
        ci_high=hi,
        p_value=mcnemar_exact(b, c),
        n=n,
        discordant=(b, c),
    )


def paired_bootstrap(
    base: np.ndarray,
    cand: np.ndarray,
    strata: np.ndarray | None = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of the mean difference, resampling items (within strata).

    With ``strata`` the statistic is the macro mean (each stratum weighted
    equally), matching tasks whose headline averages subtasks; resampling
    within each stratum keeps its size fixed. The p-value is the two-sided
    bootstrap p: twice the share of resampled deltas on the far side of zero
    (so it is never reported below 1/n_boot).  With at most ``EXACT_MAX``
    non-zero differences the p-value is instead the exact sign-flip
    (Fisher-Pitman) permutation p of the same statistic: the bootstrap of a
    handful of items has almost no distinct resamples, and two items that both
    dropped by 0.5 gave p = 1/n_boot, a "significant" regression.
    """
    d = cand - base
    rng = np.random.default_rng(seed)
    if strata is None:
        strata = np.zeros(len(d), dtype=int)
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    weight = 1.0 / len(groups)
    point = sum(weight * d[g].mean() for g in groups)
    base_mean = sum(weight * base[g].mean() for g in groups)
    cand_mean = sum(weight * cand[g].mean() for g in groups)
    boots = np.zeros(n_boot)
    for g in groups:
        dg = d[g]
        # Resample in batches so memory stays ~16 MB even for 10^5-item tasks.
        batch = max(1, 2_000_000 // len(g))
        for start in range(0, n_boot, batch):
            stop = min(n_boot, start + batch)
            idx = rng.integers(0, len(g), size=(stop - start, len(g)))
            boots[start:stop] += weight * dg[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    weights = np.zeros(len(d))
    for g in groups:
        weights[g] = weight / len(g)
    if np.all(d == 0):
        p = 1.0
    elif np.count_nonzero(d) <= EXACT_MAX:
        p = sign_flip_p(d * weights)
    else:
        tail = min((boots <= 0).mean(), (boots >= 0).mean())
        p = float(min(1.0, max(2 * tail, 1.0 / n_boot)))
    return PairedResult(
        test="paired-bootstrap",
        baseline=float(base_mean),
        candidate=float(cand_mean),
        delta=float(point),
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=p,
        n=len(d),
    )


EXACT_MAX = 16  # paired_bootstrap: up to 2^16 sign patterns are enumerated


def sign_flip_p(terms: np.ndarray) -> float:
    """Exact two-sided p of H0 "each paired difference is symmetric about 0" for the
    statistic sum(terms): the share of the 2^m sign patterns of the m non-zero
    terms whose |sum| is at least the observed one (Fisher 1935; Pitman 1937).
    Its smallest value is 2 / 2^m.  Raises ValueError above ``EXACT_MAX`` terms.
    """
    t = terms[terms != 0]
    if len(t) > EXACT_MAX:
        raise ValueError(f"sign_flip_p enumerates at most 2^{EXACT_MAX} patterns, got {len(t)} terms")
    if len(t) == 0:
        return 1.0
    signs = 1 - 2 * ((np.arange(2 ** len(t))[:, None] >> np.arange(len(t))) & 1)
    sums = np.abs(signs @ t)
    observed = abs(t.sum())
    return float(np.mean(sums >= observed * (1 - 1e-12)))


def smallest_p(n: int) -> float:
    """The smallest two-sided p any outcome on n pairs can give the gate's tests:
    2 * 0.5^n for McNemar's exact test and the sign-flip test (every pair moved
    one way); the large-n bootstrap can go down to 1/n_boot, reported as 0."""
    return min(1.0, 2 * 0.5**n) if n <= EXACT_MAX else 0.0


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (controls the family-wise error rate)."""
    m = len(p_values)
    order = sorted(range(m), key=p_values.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
