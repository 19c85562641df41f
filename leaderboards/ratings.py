"""Pairwise results between models: a win-rate matrix and Bradley–Terry ratings.

Battles come from judged pairwise tasks (e.g. ``mtbench -T grading=pairwise``):
each judged pair is one battle, already decided in both orders by the judge
(``results.json`` -> ``judging.outcome``).

Ratings follow Chatbot Arena's published method: a Bradley–Terry maximum
likelihood fit on the Elo scale (400 points = 10:1 odds), ties counted as
half a win for each side (Arena duplicates every battle and turns a tie
into one win each way, which is exactly that), 100 bootstrap rounds over
battles with 2.5 % / 97.5 % quantiles as the 95 % interval.  The fit is
``choix.opt_pairwise`` (Maystre's choix: scipy-based MLE with a negligible
ridge, alpha = 1e-6, so an unbeaten model gets a large but finite rating).
Ratings are anchored so that their mean is 1000 (Arena anchors one named
model instead; there is no such common model here).

Bradley–Terry ratings are only defined relative to models connected by
battles: when the comparison graph falls apart (a and b met, c and d met,
nobody crossed), each connected group is fitted and anchored on its own,
ratings carry their ``group`` and ranks count only models of that group.
A model without any battle gets no rating at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ELO_SCALE = 400 / math.log(10)  # natural-log strength -> Elo points
MEAN_RATING = 1000.0
BOOTSTRAP_ROUNDS = 100  # Chatbot Arena's
RIDGE = 1e-6  # choix's default regularisation: effectively the MLE


@dataclass(frozen=True)
class Matchup:
    """All battles between two models on one task (a's point of view)."""

    a: str
    b: str
    wins: int
    losses: int
    ties: int

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    ci_low: float
    ci_high: float
    battles: int
    rank: int = 0  # 1 + models of its group whose lower bound is above this upper bound (Arena's "Rank (UB)")
    group: int = 1  # connected group of the comparison graph (1 = the largest); ratings compare only within one


def win_matrix(matchups: list[Matchup]) -> dict[tuple[str, str], tuple[float, int]]:
    """(row, column) -> (row's win rate with ties half, battles), both directions."""
    totals: dict[tuple[str, str], list[float]] = {}
    for m in matchups:
        for x, y, w, l in ((m.a, m.b, m.wins, m.losses), (m.b, m.a, m.losses, m.wins)):
            cell = totals.setdefault((x, y), [0.0, 0])
            cell[0] += w + m.ties / 2
            cell[1] += m.n
    return {k: (points / n, int(n)) for k, (points, n) in totals.items() if n}


def _fit(n_models: int, battles: np.ndarray) -> np.ndarray:
    """Elo-scale BT ratings from rows (winner, loser) with ties already split."""
    import choix
    import numpy as np

    strengths = choix.opt_pairwise(n_models, [tuple(map(int, row)) for row in battles], alpha=RIDGE)
    ratings = ELO_SCALE * np.asarray(strengths)
    return ratings - ratings.mean() + MEAN_RATING


def groups(matchups: list[Matchup]) -> list[list[Matchup]]:
    """The matchups of each connected group of models (joined by at least one
    battle), largest group first; matchups without battles, or of a model
    with itself, are left out."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    played = [m for m in matchups if m.n and m.a != m.b]  # a model against itself tells nothing
    for m in played:
        parent[root(m.a)] = root(m.b)
    by_root: dict[str, list[Matchup]] = {}
    for m in played:
        by_root.setdefault(root(m.a), []).append(m)
    return sorted(by_root.values(), key=lambda ms: (-len({x for m in ms for x in (m.a, m.b)}), min(m.a for m in ms)))


def bradley_terry(matchups: list[Matchup], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> list[Rating]:
    """Ratings with bootstrap 95 % intervals: best first within each connected
    group of models (see the module docstring), the largest group first.
    Empty when no two models met."""
    return [r for number, group in enumerate(groups(matchups), 1) for r in _connected(group, rounds, seed, number)]


def _connected(matchups: list[Matchup], rounds: int, seed: int, group: int) -> list[Rating]:
    """Ratings of one connected group of models."""
    import numpy as np

    models = sorted({m.a for m in matchups} | {m.b for m in matchups})
    index = {name: i for i, name in enumerate(models)}
    # One row per battle: (a, b, outcome) with outcome 1 = a won, 0 = b won, 0.5 = tie.
    rows = []
    for m in matchups:
        a, b = index[m.a], index[m.b]
        rows += [(a, b, 1.0)] * m.wins + [(a, b, 0.0)] * m.losses + [(a, b, 0.5)] * m.ties
    battles = np.array(rows)

    def expand(sample: np.ndarray) -> np.ndarray:
        # Arena: every battle twice; a tie becomes one win each way.
        a, b, outcome = sample[:, 0], sample[:, 1], sample[:, 2]
        win_a = np.stack([a, b], axis=1)[outcome == 1.0]
        win_b = np.stack([b, a], axis=1)[outcome == 0.0]
        tie = sample[outcome == 0.5][:, :2]
        return np.concatenate([win_a, win_a, win_b, win_b, tie, tie[:, ::-1]])

    point = _fit(len(models), expand(battles))
    rng = np.random.default_rng(seed)
    boots = np.array([_fit(len(models), expand(battles[rng.integers(0, len(battles), len(battles))]))
                      for _ in range(rounds)])
    low, high = np.quantile(boots, [0.025, 0.975], axis=0)
    counts = {name: sum(m.n for m in matchups if name in (m.a, m.b)) for name in models}
    ratings = [Rating(name, float(point[i]), float(low[i]), float(high[i]), counts[name]) for i, name in enumerate(models)]
    ranked = [Rating(r.model, r.rating, r.ci_low, r.ci_high, r.battles,
                     1 + sum(o.ci_low > r.ci_high for o in ratings), group) for r in ratings]
    return sorted(ranked, key=lambda r: -r.rating)
