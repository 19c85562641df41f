"""MT-Bench judge calls as FastChat builds them (``gen_judgment.py`` at the data's commit).

Turn 1 is judged on its own; turn 2 with the whole two-turn conversation
(the ``*-multi-turn`` prompts ask the judge to focus on the second answer).
Math, reasoning and coding questions are judged against GPT-4's reference
answers (the ``*-math-*`` prompts).  Pairwise verdicts are always asked in
both orders.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalsuite.judging import PAIRWISE_LABELS, JudgeCall, choice, rating
from evalsuite.judging.verdicts import PairMaterial
from tasks.mtbench.data import NEED_REF_CATS, JudgePrompt, Question

SINGLE = rating(1, 10)
PAIR = choice(PAIRWISE_LABELS)
Turns = tuple[str, ...]  # one or two turns (preference data may have one)


def _at(turns: Turns, i: int) -> str:
    return turns[i] if i < len(turns) else ""


@dataclass(frozen=True)
class MTBenchJudging:
    prompts: dict[str, JudgePrompt]
    references: dict[int | str, Turns]  # question id -> reference answer per turn
    ref_categories: tuple[str, ...] | None = NEED_REF_CATS  # None: every question that has a reference

    def reference(self, q: Question) -> Turns | None:
        if self.ref_categories is not None and q.category not in self.ref_categories:
            return None
        return self.references.get(q.id)

    def single(self, q: Question, answer: Turns) -> list[JudgeCall]:
        """One call per turn: ``turn_1`` rates the first answer, ``turn_2`` the second."""
        ref = self.reference(q)
        math = "-math" if ref else ""
        fields = dict(question=q.turns[0], question_1=q.turns[0], question_2=_at(q.turns, 1), answer=answer[0],
                      answer_1=answer[0], answer_2=_at(answer, 1))
        if ref:
            fields.update(ref_answer_1=ref[0], ref_answer_2=_at(ref, 1))
        material = (*q.turns, *answer, *(ref or ()))
        out = []
        for turn, name in ((1, f"single{math}-v1"), (2, f"single{math}-v1-multi-turn")):
            prompt = self.prompts[name]
            out.append(JudgeCall(role=f"turn_{turn}", mode="single", template=name, messages=prompt.render(**fields),
                                 parser=SINGLE, material=material, answer_chars=(len(answer[turn - 1]),)))
        return out

    def pair(self, q: Question, turn: int, a: Turns, b: Turns) -> list[JudgeCall]:
        """Both orders of candidates ``a`` and ``b`` on one turn (a shown first, then b first)."""
        ref = self.reference(q)
        name = ("pair-math-v1" if ref else "pair-v2") + ("-multi-turn" if turn == 2 else "")
        prompt = self.prompts[name]
        shared = (*q.turns, *(ref or ()))
        calls = []
        for swapped, (first, second) in ((False, (a, b)), (True, (b, a))):
            fields = dict(question=q.turns[0], question_1=q.turns[0], question_2=_at(q.turns, 1),
                          answer_a=first[0], answer_b=second[0], answer_a_1=first[0], answer_a_2=_at(first, 1),
                          answer_b_1=second[0], answer_b_2=_at(second, 1))
            if ref:
                fields.update(ref_answer_1=ref[0], ref_answer_2=_at(ref, 1))
            calls.append(JudgeCall(role=f"turn_{turn}", mode="pairwise", template=name, messages=prompt.render(**fields),
                                   parser=PAIR, material=PairMaterial(shared, first[:turn], second[:turn]), swapped=swapped,
                                   answer_chars=(len(a[turn - 1]), len(b[turn - 1]))))
        return calls

    @property
    def hashes(self) -> dict[str, str]:
        return {name: p.hash for name, p in sorted(self.prompts.items())}
