"""How well a judge agrees with people: ``mtbench_human_agreement``.

The evaluated model *is* the judge.  Each item is one pair of answers to one
question turn; the judge decides it in both orders with FastChat's pairwise
prompts (a verdict that flips with position is a tie) and its verdict is
compared with every human vote on the item, as the MT-Bench paper counts
agreement (section 4.2):

* ``agreement``: share of human votes that equal the judge's verdict, ties
  included as a third class (paper's setup S1; GPT-4: 66 %);
* ``agreement_no_ties``: the same over votes where neither the human nor the
  judge said tie (setup S2; GPT-4: 85 %);
* ``gpt4_agreement`` (``_no_ties``): agreement with GPT-4's recorded verdict
  on the same item, per item;
* position consistency, first-position win share and tie rate in ``judging``.

Data: the 3,355 expert votes of ``human_judgments/human.jsonl`` joined with
the six ``model_answer/`` files, or any preference set in the documented
JSONL format with ``-T data=FILE`` (:func:`preference_items`).  ``--limit N``
keeps N items per category (a seeded random subset within each stratum).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalsuite.backends.base import GenerateRequest
from evalsuite.compound import MultiRequest
from evalsuite.data import DataSource, jsonl_objects
from evalsuite.errors import UserError
from evalsuite.judging import combine_orders, judging_summary, make_judgment, replies_of
from evalsuite.judging.judge import cut_short
from evalsuite.judging.stats import ratio
from evalsuite.metrics import status_counts
from evalsuite.records import (
    DatasetInfo,
    GenerationConfig,
    MetricValue,
    ModelOutput,
    Prompt,
    Sample,
    SampleResult,
    Score,
    ScoreStatus,
    SubtaskResult,
    TaskResult,
)
from evalsuite.task import NonNegativeFloat, PositiveInt, Task, TaskContext, stratified_order, task
from tasks.mtbench.calls import MTBenchJudging
from tasks.mtbench.data import NEED_REF_CATS, REFERENCES, Question, answers, judge_prompts, questions

ANSWER_MODELS = ("alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "llama-13b", "vicuna-13b-v1.2")
PUBLISHED = {"gpt4_vs_human_with_ties": 0.662, "gpt4_vs_human_without_ties": 0.856,
             "human_vs_human_with_ties (paper)": 0.63, "human_vs_human_without_ties (paper)": 0.81}


@dataclass(frozen=True)
class Item:
    """One judged pair: a question turn, two candidates' answers, the votes on it."""

    id: str
    question: Question
    turn: int  # judged turn; 2 shows the whole conversation
    a: tuple[str, ...]  # candidate a's answers, one per turn up to ``turn``
    b: tuple[str, ...]
    votes: tuple[str, ...]  # "a" | "b" | "tie", one per human vote
    gpt4: str | None = None  # GPT-4's verdict on the item (ties include inconsistent ones)
    names: tuple[str, str] | None = None  # the two candidates' model names, when known


def _winner(raw: Any, where: str) -> str:
    text = str(raw).strip().lower()
    if text.startswith("tie"):
        return "tie"
    if text in ("a", "model_a"):
        return "a"
    if text in ("b", "model_b"):
        return "b"
    raise UserError(f"{where}: label must be a, b or tie (or model_a, model_b), got {raw!r}")


def mtbench_items(source: DataSource) -> tuple[list[Item], MTBenchJudging]:
    """The 1,814 distinct (question, turn, model pair) items of the 3,355 human votes."""
    qs = {q.id: q for q in questions(source)}
    model_answers = {m: answers(source, f"model_answer/{m}.jsonl") for m in ANSWER_MODELS}
    fields = ("model_a", "model_b", "question_id", "turn", "winner")
    human = source.json_rows("human_judgments/human.jsonl", required=fields)
    gpt4_rows = source.json_rows("human_judgments/gpt4_pair.jsonl", required=fields)

    def key(row: dict[str, Any]) -> tuple[tuple[int, int, str, str], str]:
        a, b = row["model_a"], row["model_b"]
        where = f"{source.root}/human_judgments: row {json.dumps(row)}"
        for m in (a, b):
            if m not in model_answers:
                raise UserError(f"{where}: unknown model {m!r}")
        winner = _winner(row["winner"], where)
        # A mirror's rows must join to a question turn both models answered (else a KeyError mid-scoring).
        qid, turn = row["question_id"], row["turn"]
        if not isinstance(qid, int) or qid not in qs or turn not in (1, 2) or isinstance(turn, bool):
            raise UserError(f"{where}: no MT-Bench question {qid!r} with turn {turn!r}")
        for m in (a, b):
            if len(model_answers[m].get(qid, ())) < turn:
                raise UserError(f"{where}: model_answer/{m}.jsonl has no turn {turn} answer to question {qid}")
        if a > b:  # one canonical order per pair: alphabetical
            a, b = b, a
            winner = {"a": "b", "b": "a"}.get(winner, winner)
        return (int(row["question_id"]), int(row["turn"]), a, b), winner

    votes: dict[tuple[int, int, str, str], list[str]] = defaultdict(list)
    for row in human:
        k, w = key(row)
        votes[k].append(w)
    gpt4 = dict(key(row) for row in gpt4_rows)
    items = []
    for (qid, turn, a, b), vs in votes.items():
        items.append(Item(
            id=f"{qid}/turn{turn}/{a}|{b}", question=qs[qid], turn=turn,
            a=tuple(model_answers[a][qid][:turn]), b=tuple(model_answers[b][qid][:turn]),
            votes=tuple(vs), gpt4=gpt4.get((qid, turn, a, b)), names=(a, b),
        ))
    return items, MTBenchJudging(judge_prompts(source), answers(source, REFERENCES))


def preference_items(path: Path, prompts: MTBenchJudging) -> tuple[list[Item], MTBenchJudging, str]:
    """Items of a pairwise-preference JSONL file, one vote per line::

        {"prompt": "...", "response_a": "...", "response_b": "...", "label": "a" | "b" | "tie",
         "id": "optional", "category": "optional stratum",
         "reference": "optional reference answer (reference-guided judge prompt)",
         "turn_2": {"prompt": "...", "response_a": "...", "response_b": "...", "reference": "optional"}}

    With ``turn_2`` the judge sees the two-turn conversation and judges the
    second answers.  Lines with the same content are one item with several
    votes.  Returns (items, judging with the file's references, content hash).
    """
    rows, raw = jsonl_objects(path, required=("prompt", "response_a", "response_b", "label"))
    grouped: dict[str, dict[str, Any]] = {}
    ids: dict[str, tuple[str, str]] = {}  # id -> (content, first line) it was given on
    referenced: dict[str, tuple[tuple[str, str], str]] = {}  # item id -> (its reference, the line that gave it)
    for where, row in rows:
        wrong = [k for k in ("prompt", "response_a", "response_b", "label") if not isinstance(row[k], str)]
        # Optional fields too: a category or reference of another type would be str()-ed or dropped unseen.
        wrong += [k for k in ("category", "reference") if row.get(k) is not None and not isinstance(row[k], str)]
        if row.get("id") is not None and (isinstance(row["id"], bool) or not isinstance(row["id"], (str, int))):
            wrong.append("id")
        if wrong:
            raise UserError(f"{where}: field(s) {', '.join(wrong)} must be strings")
        second = row.get("turn_2")
        if second is not None and not (isinstance(second, dict) and all(
                isinstance(second.get(k), str) for k in ("prompt", "response_a", "response_b"))
                and isinstance(second.get("reference", ""), str)):
            raise UserError(f"{where}: turn_2 must be an object with string prompt, response_a, response_b "
                            "(and optional reference)")
        if second is not None and second.get("reference") is not None and row.get("reference") is None:
            raise UserError(f"{where}: turn_2.reference needs a reference for turn 1 too (the reference-guided "
                            "judge prompt shows both)")
        turns = [row] + ([second] if second else [])
        content = json.dumps([[t["prompt"], t["response_a"], t["response_b"]] for t in turns])
        given = None if row.get("id") is None else str(row["id"])
        if given is not None and ids.setdefault(given, (content, where))[0] != content:
            raise UserError(f"{where}: id {given!r} already names a different item ({ids[given][1]})")
        item = grouped.setdefault(content, {
            "id": given or hashlib.sha256(content.encode()).hexdigest()[:12],
            "category": str(row.get("category") or ""),
            "turns": tuple(t["prompt"] for t in turns),
            "a": tuple(t["response_a"] for t in turns),
            "b": tuple(t["response_b"] for t in turns),
            "votes": [],
            "where": where,
        })
        if str(row.get("category") or "") != item["category"]:
            raise UserError(f"{where}: category differs from the one {item['where']} gave the same item")
        item["votes"].append(_winner(row["label"], where))
        if isinstance(row.get("reference"), str):
            reference = (row["reference"], str((second or {}).get("reference", "")))
            if referenced.setdefault(item["id"], (reference, where))[0] != reference:
                raise UserError(f"{where}: reference differs from the one {referenced[item['id']][1]} gave the same item")
    items = [Item(id=g["id"], question=Question(g["id"], g["category"], g["turns"]), turn=len(g["turns"]),
                  a=g["a"], b=g["b"], votes=tuple(g["votes"])) for g in grouped.values()]
    if len({i.id for i in items}) != len(items):
        raise UserError(f"{path}: the same id names different items")
    references: dict[int | str, tuple[str, ...]] = {k: ref for k, (ref, _) in referenced.items()}
    judging = MTBenchJudging(prompts.prompts, references, ref_categories=None)
    return items, judging, hashlib.sha256(raw).hexdigest()


def agreement_counts(verdict: str, votes: Sequence[str], gpt4: str | None) -> dict[str, float]:
    """Per-item counts behind the agreement metrics (MT-Bench paper, setups S1 and S2)."""
    no_ties = [v for v in votes if v != "tie"] if verdict != "tie" else []
    counts = {
        "votes": float(len(votes)),
        "votes_agreeing": float(sum(v == verdict for v in votes)),
        "votes_no_ties": float(len(no_ties)),
        "votes_agreeing_no_ties": float(sum(v == verdict for v in no_ties)),
        "agreement": sum(v == verdict for v in votes) / len(votes),
    }
    if no_ties:
        counts["agreement_no_ties"] = counts["votes_agreeing_no_ties"] / len(no_ties)
    if gpt4 is not None:
        counts["gpt4_agreement"] = float(gpt4 == verdict)
        if gpt4 != "tie" and verdict != "tie":
            counts["gpt4_agreement_no_ties"] = float(gpt4 == verdict)
    return counts


def agreement_metrics(results: Sequence[SampleResult]) -> dict[str, MetricValue]:
    scored = [r.score.metrics for r in results if r.score.status is ScoreStatus.SCORED]
    out: dict[str, MetricValue | None] = {
        "agreement": ratio([m["votes_agreeing"] for m in scored], [m["votes"] for m in scored]),
        "agreement_no_ties": ratio([m["votes_agreeing_no_ties"] for m in scored], [m["votes_no_ties"] for m in scored]),
        "gpt4_agreement": ratio([m["gpt4_agreement"] for m in scored if "gpt4_agreement" in m],
                                [1.0 for m in scored if "gpt4_agreement" in m]),
        "gpt4_agreement_no_ties": ratio([m["gpt4_agreement_no_ties"] for m in scored if "gpt4_agreement_no_ties" in m],
                                        [1.0 for m in scored if "gpt4_agreement_no_ties" in m]),
    }
    return {k: v for k, v in out.items() if v is not None}


@task(
    "Agreement of a judge (the evaluated model) with 3,355 MT-Bench expert votes, or any pairwise-preference set (-T data=FILE)",
    variants={"mtbench": "human_judgments/ of MT-Bench (default)", "data": "a preference JSONL file (-T data=FILE)"},
)
def mtbench_human_agreement(
    ctx: TaskContext,
    data: str | None = None,
    max_new_tokens: PositiveInt = 2048,
    temperature: NonNegativeFloat = 0.0,
) -> Task:
    source = DataSource("mtbench", ctx.data_dir, hub_id=None)
    if not source.local:
        raise UserError("mtbench_human_agreement: pass --data-dir DIR (or set EVALSUITE_DATA_DIR) where DIR/mtbench/ "
                        "holds judge_prompts.jsonl (and, without -T data, question.jsonl, model_answer/ and human_judgments/)")
    if data:
        items, judging, file_hash = preference_items(Path(data).expanduser(), MTBenchJudging(judge_prompts(source), {}))
        info = source.info()
        dataset = DatasetInfo(source=str(Path(data).expanduser().resolve()), n_rows=sum(len(i.votes) for i in items),
                              content_hash=hashlib.sha256((info.content_hash + file_hash).encode()).hexdigest())
    else:
        items, judging = mtbench_items(source)
        dataset = source.info()
    by_id = {i.id: i for i in items}
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature,
                              seed=ctx.seed if temperature > 0 else None)

    def as_prompt(messages: tuple) -> Prompt:
        return list(messages) if ctx.chat else "\n\n".join(m.content for m in messages)

    def calls(item: Item) -> list:
        return judging.pair(item.question, item.turn, item.a, item.b)

    def request(sample: Sample) -> MultiRequest:
        return MultiRequest(tuple(GenerateRequest(as_prompt(c.messages), config) for c in calls(by_id[sample.id])))

    def score(items_: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        for sample, output in items_:
            item = by_id[sample.id]
            judgments = [make_judgment(call, replies_of(part), truncated=cut_short(part))
                         for call, part in zip(calls(item), output.parts)]
            verdict, consistent = combine_orders(*judgments)
            if verdict is None:
                yield Score(status=ScoreStatus.PARSE_ERROR, judgments=judgments,
                            detail="; ".join(f"{'swapped' if j.swapped else 'as listed'}: {j.detail}"
                                             for j in judgments if j.status is not ScoreStatus.SCORED))
                continue
            named = verdict if item.names is None or verdict == "tie" else item.names["ab".index(verdict)]
            yield Score(metrics=agreement_counts(verdict, item.votes, item.gpt4), judgments=judgments,
                        answer=named + ("" if consistent else " (inconsistent)"))

    def aggregate(results: Sequence[SampleResult]) -> TaskResult:
        by_category: dict[str, list[SampleResult]] = defaultdict(list)
        for r in results:
            by_category[r.subtask or ""].append(r)
        subtasks = {}
        if len(by_category) > 1 or "" not in by_category:
            subtasks = {c: SubtaskResult(n_samples=len(rs), metrics=agreement_metrics(rs), status_counts=status_counts(rs))
                        for c, rs in sorted(by_category.items())}
        votes = Counter(v for r in results for v in by_id[r.sample_id].votes)
        return TaskResult(
            n_samples=len(results),
            metrics=agreement_metrics(results),
            headline="agreement",
            subtasks=subtasks,
            status_counts=status_counts(results),
            notes={"human_votes": dict(votes), "published_anchors": PUBLISHED if not data else {},
                   "unit": "items = (question, turn, model pair); agreement is counted per human vote"},
            judging=judging_summary(results),
        )

    samples = [Sample(id=i.id, subtask=i.question.category or None,
                      input={"question_id": i.question.id, "turn": i.turn, "models": list(i.names or ())},
                      target={"votes": list(i.votes), "gpt4": i.gpt4}) for i in items]
    return Task(
        name="mtbench_human_agreement",
        version="1.0",
        samples=stratified_order(samples),  # --limit N: N items per category, the same in every run
        request=request,
        score=score,
        aggregate=aggregate,
        dataset=dataset,
        params={"data": data, "max_new_tokens": max_new_tokens, "temperature": temperature,
                "reference_categories": list(NEED_REF_CATS) if not data else "rows with a reference"},
        generation=config,
        judge_templates=judging.hashes,
    )
