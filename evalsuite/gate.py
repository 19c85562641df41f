"""``evalsuite gate``: fail CI when a candidate run regresses against a baseline.

Each task is compared on its per-sample headline values, paired by
(task, sample_id): McNemar's exact test when every value is 0/1, a paired
bootstrap otherwise (stratified by subtask when the headline is a macro
mean). p-values are Holm-adjusted across tasks so a suite of many tasks does
not fail by chance. The summary is markdown, ready for a pull-request comment.

Judged tasks (an LLM judge grades them) are compared only when both runs used
the same judge, judge decoding and judge prompts; a sample whose judge reply
had no verdict (parse_error) in either run is the judge's failure, not the
model's, so such pairs are left out rather than scored 0 (their counts are
shown, and ``--max-unscored-increase`` gates on them).  A self-judged run
gets a warning.

Exit codes: 0 pass, 1 regression (or below --min, too many unscored
samples, or a task on which the candidate scored no sample at all), 2 usage error, 3 runs not comparable (different tasks, samples,
prompts, templates or task parameters: a delta would be meaningless).
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from evalsuite.errors import UserError
from evalsuite.records import ResultsSummary, RunProvenance, SampleResult, ScoreStatus, visible_bidi_controls
from evalsuite.rundir import RunDir
from evalsuite.stats import PairedResult, holm, is_binary, paired_binary, paired_bootstrap, smallest_p

EXIT_PASS, EXIT_REGRESSED, EXIT_NOT_COMPARABLE = 0, 1, 3
POINTS = 100.0  # fractions are shown, and thresholds given, in percentage points


@dataclass
class Run:
    path: Path
    provenance: RunProvenance
    results: ResultsSummary
    samples: dict[str, dict[str, SampleResult]]  # task -> sample_id -> record

    @classmethod
    def load(cls, path: Path) -> "Run":
        rundir = RunDir.existing(path)
        provenance = rundir.provenance()
        results = rundir.results()
        samples: dict[str, dict[str, SampleResult]] = {}
        for record in rundir.samples():
            samples.setdefault(record.task, {})[record.sample_id] = record
        return cls(path, provenance, results, samples)

    @property
    def label(self) -> str:
        return f"`{_code(self.provenance.run_id)}` (`{_code(self.provenance.model.id)}`)"


@dataclass
class TaskComparison:
    task: str
    metric: str
    aggregation: str
    stats: PairedResult
    unscored: tuple[int, int]  # (baseline, candidate)
    p_adjusted: float = 1.0
    verdict: str = ""
    failures: list[str] = field(default_factory=list)
    # subtask -> (n, baseline mean, candidate mean): descriptive, no tests (no fishing).
    subtasks: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    # 100 for fractions (shown in points); 1 for metrics on their own scale (e.g. BLEU 0-100).
    scale: float = POINTS
    judge: str | None = None  # the LLM judge of a judged task
    left_out: int = 0  # judged tasks: pairs without a verdict in either run
    p_floor: float = 0.0  # the smallest p-value any outcome on these n pairs could give
    nothing_scored: str | None = None  # the candidate scored no sample: its statuses, e.g. "4 generation_error"


def _md(text: str) -> str:
    """Make text safe as plain text in a markdown table cell, list item or HTML summary
    of a pull-request comment: "<!--" in a model or task name hid the rest of the
    comment, "<b>" rendered, and "@name" pinged a user; entities show them as typed."""
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("@", "&#64;")):
        text = text.replace(raw, safe)
    return _code(text)


def _code(text: str) -> str:
    """Make text safe inside inline code (where entities are not decoded), also in a table;
    bidi controls show as codes, so a name cannot display as another one."""
    return visible_bidi_controls(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def comparability_problems(base: Run, cand: Run) -> tuple[list[str], list[str]]:
    """(problems that make a delta meaningless, warnings worth showing)."""
    problems: list[str] = []
    warnings: list[str] = []
    b_tasks, c_tasks = set(base.results.tasks), set(cand.results.tasks)
    if b_tasks != c_tasks:
        if b_tasks - c_tasks:
            problems.append(f"tasks only in the baseline: {', '.join(sorted(b_tasks - c_tasks))}")
        if c_tasks - b_tasks:
            problems.append(f"tasks only in the candidate: {', '.join(sorted(c_tasks - b_tasks))}")
    for task in sorted(b_tasks & c_tasks):
        bp, cp = base.provenance.tasks.get(task), cand.provenance.tasks.get(task)
        if bp is None or cp is None:
            problems.append(f"{task}: missing from run.json")
            continue
        b_setup, c_setup = bp.setup(), cp.setup()
        for name in b_setup:
            if b_setup[name] != c_setup[name]:
                problems.append(f"{task}: {name} differ ({_diff(b_setup[name], c_setup[name])})")
        if task in base.results.tasks and task in cand.results.tasks:
            judge_problems, judge_warnings = _judge_comparability(base, cand, task)
            problems += judge_problems
            warnings += judge_warnings
        b_res, c_res = base.results.tasks[task], cand.results.tasks[task]
        if b_res.headline != c_res.headline:
            problems.append(f"{task}: headline metric differs ({b_res.headline} vs {c_res.headline})")
        elif b_res.headline_aggregation != c_res.headline_aggregation:
            problems.append(f"{task}: headline aggregation differs ({b_res.headline_aggregation} vs {c_res.headline_aggregation})")
        b_ids, c_ids = set(base.samples.get(task, {})), set(cand.samples.get(task, {}))
        if b_ids != c_ids:
            only_b, only_c = sorted(b_ids - c_ids), sorted(c_ids - b_ids)
            problems.append(
                f"{task}: sample sets differ ({len(only_b)} only in baseline, {len(only_c)} only in candidate; "
                f"e.g. {', '.join((only_b + only_c)[:3])})"
            )
        changed = [  # an empty hash (e.g. a generation error) is unknown, not different
            sid for sid in sorted(b_ids & c_ids)
            if (bh := base.samples[task][sid].prompt_hash) and (ch := cand.samples[task][sid].prompt_hash) and bh != ch
        ]
        if changed:
            problems.append(f"{task}: {len(changed)} prompts differ (prompt_hash), e.g. {', '.join(changed[:3])}")
    # Same major schema (else loading refused); scoring code may still differ between versions.
    for name, b_val, c_val in (("schema versions", base.provenance.schema_version, cand.provenance.schema_version),
                               ("evalsuite versions", base.provenance.evalsuite_version, cand.provenance.evalsuite_version)):
        if b_val != c_val:
            warnings.append(f"the runs were written by different {name} ({b_val} vs {c_val}): "
                            "answer extraction and scoring may differ between them")
    for which, run in (("baseline", base), ("candidate", cand)):
        versions = dict.fromkeys([run.provenance.evalsuite_version, *(c.evalsuite_version for c in run.provenance.continued)])
        if len(versions) > 1:
            warnings.append(f"the {which} was finished by another evalsuite version than started it "
                            f"({' then '.join(versions)}, by --resume): its samples may be scored differently")
    bm, cm = base.provenance.model, cand.provenance.model
    if bm.chat_template != cm.chat_template:
        problems.append(f"chat template {'on' if bm.chat_template else 'off'} in the baseline, {'on' if cm.chat_template else 'off'} in the candidate")
    elif bm.chat_template_hash != cm.chat_template_hash:
        warnings.append("the models' chat templates differ (chat_template_hash); prompts as rendered may differ")
    return problems, warnings


def _judged(run: Run, task: str) -> bool:
    judging = run.results.tasks[task].judging
    return judging is not None and judging.judge is not None


def _judge_comparability(base: Run, cand: Run, task: str) -> tuple[list[str], list[str]]:
    """A judged score depends on its judge: different judges make a delta meaningless."""
    if not (_judged(base, task) or _judged(cand, task)):
        return [], []
    bj, cj = base.provenance.judge, cand.provenance.judge
    if bj is None or cj is None:
        return [f"{task}: judged in one run only"], []
    problems = []
    b_model, c_model = bj.model.identity(), cj.model.identity()
    if b_model != c_model:
        problems.append(f"{task}: judged by different judges ({_diff(b_model, c_model)})")
    if bj.generation != cj.generation or bj.retries != cj.retries:
        problems.append(f"{task}: judge decoding differs ({_diff(bj.generation.model_dump(), cj.generation.model_dump())})")
    warnings = [f"{task}: the {which} judged its own answers (self-judging favours the judged model)"
                for which, run in (("baseline", base), ("candidate", cand))
                if (j := run.results.tasks[task].judging) is not None and j.self_judging]
    return problems, warnings


def _diff(b: object, c: object) -> str:
    if isinstance(b, dict) and isinstance(c, dict):
        keys = sorted(k for k in set(b) | set(c) if b.get(k) != c.get(k))
        return "; ".join(f"{k}: {b.get(k)!r} vs {c.get(k)!r}" for k in keys[:4])
    text = f"{b!r} vs {c!r}"
    return text if len(text) < 160 else text[:157] + "..."


def _values(run: Run, task: str, ids: list[str], metric: str) -> tuple[np.ndarray, int]:
    """Per-sample headline values; unscored samples count as 0 (a failure)."""
    out = np.zeros(len(ids))
    unscored = 0
    for i, sid in enumerate(ids):
        score = run.samples[task][sid].score
        if score.status is not ScoreStatus.SCORED:
            if score.status is ScoreStatus.GENERATED:
                raise UserError(f"{run.path}: {task} is generated but not scored; run `evalsuite score` first")
            unscored += 1
            continue
        if metric not in score.metrics:
            raise UserError(f"{run.path}: {task}/{sid} has no per-sample value for headline metric '{metric}'")
        out[i] = score.metrics[metric]
    return out, unscored


def compare_task(base: Run, cand: Run, task: str, alpha: float) -> TaskComparison:
    result = base.results.tasks[task]
    metric = result.headline
    ids = sorted(base.samples.get(task, {}))
    if not ids:
        raise UserError(f"{task}: no samples in {base.path}")
    # A candidate that scored nothing (an endpoint down, a broken sandbox) fails
    # below: against a low or small baseline its "all wrong" is no significant drop.
    statuses = Counter(cand.samples[task][sid].score.status.value for sid in ids)
    nothing = None if statuses[ScoreStatus.SCORED.value] else ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    judged = _judged(base, task)
    if judged:
        # Each run's unscored samples are still counted below.
        _, b_unscored = _values(base, task, ids, metric)
        _, c_unscored = _values(cand, task, ids, metric)
        both = [sid for sid in ids if all(r.samples[task][sid].score.status is ScoreStatus.SCORED for r in (base, cand))]
        if not both and nothing is None:
            raise UserError(f"{task}: no sample has a judge verdict in both runs")
        both = both or ids  # the candidate judged nothing: every sample shown as a failure
        left_out, ids = len(ids) - len(both), both
    b, b_unscored_kept = _values(base, task, ids, metric)
    c, c_unscored_kept = _values(cand, task, ids, metric)
    if not judged:
        b_unscored, c_unscored, left_out = b_unscored_kept, c_unscored_kept, 0
    level = 1 - alpha
    macro = result.headline_aggregation == "macro"
    strata = None
    if macro:
        names = [base.samples[task][sid].subtask or "" for sid in ids]
        _, strata = np.unique(names, return_inverse=True)
    equal_strata = strata is None or len(set(np.bincount(strata))) == 1
    if is_binary(b, c) and equal_strata:
        # With equal-size subtasks the macro mean equals the micro mean.
        stats = paired_binary(b, c, level)
    else:
        stats = paired_bootstrap(b, c, strata if macro else None, level)
    comp = TaskComparison(task, metric, "macro" if macro else "micro", stats, (b_unscored, c_unscored),
                          judge=base.results.tasks[task].judging.judge if judged else None, left_out=left_out,
                          nothing_scored=nothing)
    if max(np.abs(b).max(), np.abs(c).max()) > 1:
        comp.scale = 1.0
    # Every pair moved one way is the most extreme outcome: p = 2 * 0.5^n.
    # With n <= 5 it is >= 0.05, and a 100-point drop would pass unnoticed.
    comp.p_floor = smallest_p(stats.n)
    names = np.array([base.samples[task][sid].subtask or "" for sid in ids])
    if len(set(names)) > 1:
        for name in sorted(set(names)):
            mask = names == name
            comp.subtasks[name] = (int(mask.sum()), float(b[mask].mean()), float(c[mask].mean()))
    return comp


def decide(
    comparisons: list[TaskComparison],
    alpha: float,
    max_drop: float,
    minimums: dict[str, float],
    max_unscored_increase: float | None,
    correction: str,
) -> None:
    raw = [c.stats.p_value for c in comparisons]
    adjusted = holm(raw) if correction == "holm" else raw
    for comp, p in zip(comparisons, adjusted):
        comp.p_adjusted = p
        delta_pts = comp.stats.delta * comp.scale
        significant = p < alpha
        if significant and delta_pts < 0 and _beyond(-delta_pts, max_drop):
            comp.verdict = "❌ regressed"
            comp.failures.append(f"dropped {-delta_pts:.2f} points (p={p:.3g}), more than the allowed {max_drop:g}")
        elif significant and delta_pts < 0:
            comp.verdict = "⚠️ dropped within tolerance"
        elif significant and delta_pts > 0:
            comp.verdict = "✅ improved"
        elif comp.p_floor >= alpha:
            comp.verdict = "⚠️ too few samples to test"
        else:
            comp.verdict = "✅ no significant change"
        if comp.task in minimums and _beyond(minimums[comp.task], comp.stats.candidate * comp.scale):
            comp.verdict = "❌ below minimum"
            comp.failures.append(f"{comp.stats.candidate * comp.scale:.2f} is below the minimum {minimums[comp.task]:g}")
        if max_unscored_increase is not None:
            n = comp.stats.n
            increase = (comp.unscored[1] - comp.unscored[0]) / n * POINTS
            if _beyond(increase, max_unscored_increase):
                comp.verdict = "❌ more unscored"
                comp.failures.append(
                    f"unscored rate rose {increase:.2f} points ({comp.unscored[0]}→{comp.unscored[1]} of {n}), "
                    f"more than the allowed {max_unscored_increase:g}"
                )
        if comp.nothing_scored is not None:
            comp.verdict = "❌ nothing scored"
            comp.failures.append(f"no sample was scored in the candidate ({comp.nothing_scored})")


def _beyond(value: float, limit: float) -> bool:
    """``value > limit``, where a value equal to the limit but for float residue is not beyond it.

    Points are fractions times 100, and most fractions are inexact in binary:
    7 of 100 samples lost came out as 7.000000000000001 points (failing
    ``--max-drop 7``) and 57 % as 56.99999999999999 (failing ``--min t=57``).
    A tie with a threshold passes, as documented; differences below 1e-9
    points are residue (every count-based fraction differs by far more)."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-12, abs_tol=1e-9)


def _pct(x: float, scale: float = POINTS) -> str:
    return f"{x * scale:.1f}"


def _signed(x: float, scale: float = POINTS) -> str:
    text = f"{x * scale:+.1f}"
    return "±0.0" if text in ("+0.0", "-0.0") else text.replace("-", "−")


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def render_markdown(
    base: Run,
    cand: Run,
    comparisons: list[TaskComparison],
    alpha: float,
    max_drop: float,
    correction: str,
    warnings: list[str],
) -> str:
    failed = [c for c in comparisons if c.failures]
    head = "❌ FAIL" if failed else "✅ PASS"
    adj = f", Holm-adjusted across {len(comparisons)} tasks" if correction == "holm" and len(comparisons) > 1 else ""
    lines = [
        f"## evalsuite gate: {head}",
        "",
        f"Baseline {base.label} vs candidate {cand.label}. "
        f"α = {alpha:g}{adj}; allowed drop {max_drop:g} points.",
        "",
        f"| task | metric | n | baseline | candidate | Δ ({(1 - alpha) * 100:g}% CI) | p | test | unscored (base→cand) | verdict |",
        "|---|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for c in comparisons:
        s = c.stats
        test = "McNemar exact" if s.test == "mcnemar-exact" else "paired bootstrap"
        if s.discordant is not None:
            test += f" ({s.discordant[0]} lost, {s.discordant[1]} gained)"
        lines.append(
            f"| {_md(c.task)} | {_md(c.metric)} ({c.aggregation}) | {s.n} | {_pct(s.baseline, c.scale)} | "
            f"{_pct(s.candidate, c.scale)} | {_signed(s.delta, c.scale)} "
            f"[{_signed(s.ci_low, c.scale)}, {_signed(s.ci_high, c.scale)}] | {_p(c.p_adjusted)} | {test} | "
            f"{c.unscored[0]}→{c.unscored[1]} | {c.verdict} |"
        )
    lines.append("")
    for c in failed:
        for reason in c.failures:
            lines.append(f"- **{_md(c.task)}**: {reason}")
    for c in comparisons:
        if c.judge is not None:
            lines.append(f"- {_md(c.task)}: graded by the LLM judge `{_code(c.judge)}` in both runs"
                         + (f"; {c.left_out} samples without a judge verdict in either run left out" if c.left_out else ""))
    for c in comparisons:
        if c.p_floor >= alpha:
            lines.append(f"- ⚠️ {_md(c.task)}: with {c.stats.n} paired samples no change can be significant at "
                         f"α = {alpha:g} (the smallest possible p is {c.p_floor:.3g}), so no drop can fail this "
                         "gate; evaluate more samples")
    for w in warnings:
        lines.append(f"- ⚠️ {_md(w)}")
    for c in comparisons:
        if not c.subtasks:
            continue
        lines += [
            "",
            f"<details><summary>{_md(c.task)}: {len(c.subtasks)} subtasks, largest changes first "
            "(descriptive only; the verdict is the task-level test)</summary>",
            "",
            "| subtask | n | baseline | candidate | Δ |",
            "|---|---:|---:|---:|---:|",
        ]
        ordered = sorted(c.subtasks.items(), key=lambda kv: (-abs(kv[1][2] - kv[1][1]), kv[0]))
        for name, (n, b_mean, c_mean) in ordered:
            lines.append(
                f"| {_md(name)} | {n} | {_pct(b_mean, c.scale)} | {_pct(c_mean, c.scale)} | {_signed(c_mean - b_mean, c.scale)} |"
            )
        lines += ["", "</details>"]
    lines += [
        "",
        "<sub>Scores in percentage points (metrics already above 1, e.g. BLEU, on their own scale) over the "
        "samples both runs share, paired by (task, sample_id); "
        "unscored samples count as failures. Δ = candidate − baseline. "
        "A task fails when it drops significantly by more than the allowed amount.</sub>",
    ]
    return "\n".join(lines) + "\n"


def render_not_comparable(base: Run, cand: Run, problems: list[str]) -> str:
    lines = [
        "## evalsuite gate: ⛔ NOT COMPARABLE",
        "",
        f"Baseline {base.label} and candidate {cand.label} did not evaluate the same thing, so a delta would be meaningless:",
        "",
    ]
    lines += [f"- {_md(p)}" for p in problems]
    return "\n".join(lines) + "\n"


def _minimums(values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        task, sep, value = item.partition("=")
        try:
            out[task.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not task.strip():
            raise UserError(f"--min expects TASK=POINTS (e.g. bbh=40), got '{item}'")
        if math.isnan(out[task.strip()]):
            raise UserError(f"--min {item}: NaN is not a threshold (every comparison with it is false)")
    return out


def _prepare_output(output: Path) -> None:
    """Create the folder of --output and check the file can be written (UserError if not)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output {output}: cannot create its folder ({exc.strerror or exc})") from None
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        raise UserError(f"--output {output}: not writable")


class Threshold(click.FloatRange):
    """A ``FloatRange`` that refuses NaN, which click lets through: every comparison
    with NaN is false, so ``--max-drop nan`` passed any drop and ``--alpha nan``
    made no change significant."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail("NaN is not a threshold (every comparison with it is false)", param, ctx)
        return number


@click.command()
@click.option("--baseline", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory of the reference model.")
@click.option("--candidate", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory of the model under test.")
@click.option("--max-drop", type=Threshold(min=0), default=0.0, show_default=True, help="Allowed significant drop per task, in percentage points.")
@click.option("--alpha", type=Threshold(min=0, max=1, min_open=True, max_open=True), default=0.05, show_default=True, help="Significance level (also sets the CI level, 1-alpha).")
@click.option("--min", "minimums", multiple=True, metavar="TASK=POINTS", help="Fail when the candidate scores below this, in percentage points (e.g. --min bbh=40).")
@click.option("--max-unscored-increase", type=Threshold(min=0), default=None, help="Fail when a task's unscored rate (parse/sandbox/generation errors) rises by more than this many points.")
@click.option("--correction", type=click.Choice(["holm", "none"]), default="holm", show_default=True, help="Multiple-comparison correction across tasks.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the markdown summary here (e.g. for a PR comment).")
def gate(
    baseline: Path,
    candidate: Path,
    max_drop: float,
    alpha: float,
    minimums: tuple[str, ...],
    max_unscored_increase: float | None,
    correction: str,
    output: Path | None,
) -> None:
    """Compare a candidate run with a baseline run using paired significance tests.

    Per task: McNemar's exact test (0/1 metrics) or a paired bootstrap (graded),
    on samples paired by id; unscored samples count as failures. Prints a
    markdown summary for a pull-request comment.

    Exit codes: 0 pass; 1 a task regressed significantly by more than
    --max-drop, fell below --min, exceeded --max-unscored-increase, or had
    no sample scored in the candidate;
    2 bad usage; 3 the runs are not comparable (tasks, samples, prompts,
    templates or task parameters differ).
    """
    mins = _minimums(minimums)
    if output is not None:
        _prepare_output(output)  # before the comparison: a bad path must not turn a verdict into a traceback
    base, cand = Run.load(baseline), Run.load(candidate)
    unknown = sorted(set(mins) - set(base.results.tasks))
    if unknown:
        raise UserError(f"--min names task(s) not in the runs: {', '.join(unknown)}")
    problems, warnings = comparability_problems(base, cand)
    if problems:
        text, code = render_not_comparable(base, cand, problems), EXIT_NOT_COMPARABLE
    else:
        comparisons = [compare_task(base, cand, t, alpha) for t in sorted(base.results.tasks)]
        decide(comparisons, alpha, max_drop, mins, max_unscored_increase, correction)
        text = render_markdown(base, cand, comparisons, alpha, max_drop, correction, warnings)
        code = EXIT_REGRESSED if any(c.failures for c in comparisons) else EXIT_PASS
    click.echo(text, nl=False)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--output {output}: cannot write ({exc.strerror or exc}); the summary is above") from None
    # sys.exit, not ctx.exit: the CLI runs click with standalone_mode=False,
    # which would swallow the code.
    sys.exit(code)
