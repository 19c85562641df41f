"""Benchmark: build a leaderboard from 50 runs × 30 tasks of synthetic runs.

The runs are schema-valid (written with the record types through RunDir),
with per-sample records, so the build does all of its real work: parsing,
sample chunks, pages, SVG history and raw-file copies. Target: < 3 s on 2 cores.

    .venv/bin/python bench/bench_leaderboard.py [--runs 50] [--tasks 30] [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from evalsuite.records import (
    DatasetInfo,
    GenerationConfig,
    Message,
    MetricValue,
    ModelInfo,
    ModelOutput,
    ResultsSummary,
    RunProvenance,
    SampleResult,
    Score,
    SubtaskResult,
    TaskProvenance,
    TaskResult,
)
from evalsuite.rundir import RunDir
from leaderboards.builder import build_site
from leaderboards.config import load_config

SUBTASKS = ("alpha", "beta", "gamma")


def _mean_se(values: list[float]) -> MetricValue:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return MetricValue(value=mean, stderr=(var / n) ** 0.5)


def make_run(root: Path, index: int, n_tasks: int, n_samples: int, rng: random.Random) -> Path:
    series, step = divmod(index, 10)  # 5 series × 10 checkpoints
    model = ModelInfo(id=f"org/model-{series}@step-{(step + 1) * 1000}", backend="hf", dtype="bfloat16",
                      parameters=135_000_000 * (series + 1), revision=None)
    skill = 0.2 + 0.06 * step + 0.05 * series
    run_id = f"bench-{index:03d}"
    tasks: dict[str, TaskProvenance] = {}
    results: dict[str, TaskResult] = {}
    rundir = RunDir(root / run_id)
    records = []
    for t in range(n_tasks):
        name = f"task_{t:02d}"
        tasks[name] = TaskProvenance(
            name=name, version="1.0", params={"variant": "cot", "shots": 3},
            dataset=DatasetInfo(source=f"synthetic/{name}", content_hash="0" * 64, n_rows=n_samples),
            template_hashes={"question.j2": "1" * 64}, generation=GenerationConfig(max_new_tokens=256),
        )
        per_sub: dict[str, list[float]] = {s: [] for s in SUBTASKS}
        for i in range(n_samples):
            sub = SUBTASKS[i % len(SUBTASKS)]
            correct = float(rng.random() < skill)
            per_sub[sub].append(correct)
            question = f"Q{i}: " + " ".join(rng.choice(("red", "blue", "fox", "jumps", "lazy", "7", "<b>")) for _ in range(80))
            records.append(SampleResult(
                task=name, sample_id=f"{sub}/{i}", subtask=sub,
                prompt=[Message(role="user", content=question)], prompt_hash=f"{i:064x}",
                target="(A)", output=ModelOutput(completions=["Let's think. " * 15 + "So the answer is (A)."]),
                score=Score(metrics={"exact_match": correct}, answer="(A)" if correct else "(B)"),
            ))
        subtasks = {s: SubtaskResult(n_samples=len(v), metrics={"exact_match": _mean_se(v)}, status_counts={"scored": len(v)})
                    for s, v in per_sub.items()}
        macro = statistics.mean(r.metrics["exact_match"].value for r in subtasks.values())
        se = (sum(r.metrics["exact_match"].stderr ** 2 for r in subtasks.values()) ** 0.5) / len(subtasks)
        results[name] = TaskResult(n_samples=n_samples, metrics={"exact_match": MetricValue(value=macro, stderr=se)},
                                   headline="exact_match", headline_aggregation="macro", subtasks=subtasks,
                                   status_counts={"scored": n_samples})
    rundir.write_provenance(RunProvenance(
        run_id=run_id, evalsuite_version="0.1.0", model=model, tasks=tasks, seed=1234, batch_size=8,
        started_at=f"2026-01-{1 + index % 28:02d}T00:00:00+00:00", finished_at="2026-01-28T00:00:00+00:00",
    ))
    rundir.append(records)
    rundir.close()
    rundir.write_results(ResultsSummary(run_id=run_id, model=model.id, tasks=results))
    return rundir.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--samples", type=int, default=40, help="samples per task per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    work = Path(tempfile.mkdtemp(prefix="bench-lb-"))
    try:
        t0 = time.perf_counter()
        runs = [make_run(work / "runs", i, args.tasks, args.samples, rng) for i in range(args.runs)]
        gen_s = time.perf_counter() - t0
        raw = sum(p.stat().st_size for r in runs for p in r.iterdir())
        config = load_config()
        times, cpu = [], []
        for i in range(args.repeat):
            before = os.times()
            report = build_site(runs, work / f"site{i}", config)  # fresh folder: no rmtree in the timing
            after = os.times()
            times.append(report.seconds)
            # CPU seconds incl. the forked workers: robust when the machine is shared.
            cpu.append(sum(after[:4]) - sum(before[:4]))
        print(f"cpus available: {len(os.sched_getaffinity(0))}")
        print(f"input: {args.runs} runs × {args.tasks} tasks × {args.samples} samples = "
              f"{report.samples} samples, {raw / 1e6:.1f} MB of run files (generated in {gen_s:.1f} s)")
        print(f"site: {report.models} models, {report.tasks} tasks, {report.files} files, {report.bytes / 1e6:.1f} MB")
        print(f"build time: best {min(times):.2f} s, median {statistics.median(times):.2f} s over {len(times)} builds"
              f" (target < 3 s)")
        print(f"cpu time: best {min(cpu):.2f} s (user+sys, incl. workers); load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
