"""Judge throughput on real MT-Bench judge prompts, batched vs one call at a time, side by side.

The judge rates turn-1 answers from one of MT-Bench's answer files with
FastChat's single-answer prompts (no generation of answers is needed), through
the same :class:`evalsuite.judging.Judge` handle the tasks use:

batched:    every judge call of the set in one handle call (the backend batches);
sequential: one call per judgment (what a per-item judge loop does);
cached:     the batched set again, answered from the run's judgment log.

Prints judgments per minute, judge prompt and completion tokens per second,
the parse-error rate, the speed-up of batching, and the load average (the
machine is shared: report it with every figure).

    python bench/bench_judge.py --judgments 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evalsuite.backends.base import BackendOptions  # noqa: E402
from evalsuite.data import DataSource  # noqa: E402
from evalsuite.judging.judge import Judge, load_judge  # noqa: E402
from evalsuite.records import ScoreStatus  # noqa: E402
from tasks.mtbench.calls import MTBenchJudging  # noqa: E402
from tasks.mtbench.data import ANSWER_FILES, REFERENCES, answers, judge_prompts, questions  # noqa: E402


def measure(judge: Judge, calls: list, batched: bool) -> dict[str, float]:
    judge.stats.clear()
    start = time.perf_counter()
    judgments = judge(calls) if batched else [j for c in calls for j in judge([c])]
    seconds = time.perf_counter() - start
    errors = sum(j.status is ScoreStatus.PARSE_ERROR for j in judgments)
    return {"seconds": seconds, "per_minute": len(judgments) / seconds * 60,
            "prompt_tok_s": judge.stats["prompt_tokens"] / seconds, "completion_tok_s": judge.stats["completion_tokens"] / seconds,
            "completion_tokens": judge.stats["completion_tokens"], "parse_errors": errors, "n": len(judgments),
            "cached": judge.stats["cached"]}


def line(name: str, m: dict[str, float]) -> str:
    return (f"{name:10s} {m['seconds']:7.1f} s  {m['per_minute']:7.1f} judgments/min  "
            f"{m['prompt_tok_s']:7.1f} prompt tok/s  {m['completion_tok_s']:6.1f} judge tok/s  "
            f"parse errors {m['parse_errors']}/{m['n']}  cached {m['cached']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVALSUITE_DATA_DIR", "../shared/data"))
    parser.add_argument("--judge", default="smollm2-135m", help="any model spec")
    parser.add_argument("--answers", default="gpt-3.5-turbo", choices=ANSWER_FILES)
    parser.add_argument("--judgments", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=2048, help="judge budget (FastChat: 2048)")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()

    source = DataSource("mtbench", Path(args.data_dir), hub_id=None)
    judging = MTBenchJudging(judge_prompts(source), answers(source, REFERENCES))
    given = answers(source, f"model_answer/{args.answers}.jsonl")
    calls = [judging.single(q, given[q.id])[0] for q in questions(source)][: args.judgments]
    judge = load_judge(args.judge, {"max_new_tokens": str(args.max_new_tokens), "batch_size": args.batch_size},
                       BackendOptions())
    print(f"judge {judge.id} ({judge.info.model.backend}), {len(calls)} single-answer judgments of {args.answers} "
          f"turn-1 answers, max {args.max_new_tokens} new tokens, batch {judge.backend.effective_batch_size}")
    print(f"load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    with tempfile.TemporaryDirectory() as tmp:
        judge.open_log(Path(tmp))
        batched = measure(judge, calls, batched=True)
        print(line("batched", batched))
        cached = measure(judge, calls, batched=True)
        print(line("cached", cached))
        judge.close_log()
    if not args.skip_sequential:
        judge.log = None  # no cache: every call asks the judge again
        sequential = measure(judge, calls, batched=False)
        print(line("sequential", sequential))
        print(f"batched / sequential: {batched['per_minute'] / sequential['per_minute']:.2f}x judgments per minute")
    print(f"load average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    judge.close()


if __name__ == "__main__":
    main()
