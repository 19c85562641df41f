"""Generation throughput of the HF backend on real BBH prompts, side by side.

naive:   fixed batches of --batch-size, longest first, left padding (what
         lm-evaluation-harness does for local HF models);
planned: evalsuite's plan -- prompts sharing the few-shot prefix are batched
         together, the prefix is prefilled once per subtask and its KV cache
         reused, and a token budget caps rows x width.

Both produce the same greedy completions (checked); the ratio is the speed-up.

    python bench/bench_generation.py --subtasks navigate,snarks --per-subtask 8 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evalsuite.backends import hf  # noqa: E402
from evalsuite.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from evalsuite.backends.hf import HFBackend  # noqa: E402
from evalsuite.records import GenerationConfig  # noqa: E402
from evalsuite.runner import limit_samples  # noqa: E402
from evalsuite.task import TaskContext  # noqa: E402
from tasks.bbh import bbh  # noqa: E402


def timed(backend: HFBackend, requests: list[GenerateRequest]) -> tuple[float, dict[int, list[str]], int]:
    start = time.perf_counter()
    outputs = dict(backend.generate(requests))
    elapsed = time.perf_counter() - start
    tokens = sum(o.completion_tokens for o in outputs.values())
    return elapsed, {i: o.completions for i, o in outputs.items()}, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVALSUITE_DATA_DIR", "../shared/data"))
    parser.add_argument("--subtasks", default="navigate,snarks,date_understanding")
    parser.add_argument("--per-subtask", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    backend = HFBackend("smollm2-135m", BackendOptions(batch_size=args.batch_size))
    task = bbh(TaskContext(data_dir=args.data_dir, chat=True), subtasks=args.subtasks.split(","))
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    requests = [GenerateRequest(task.request(s).prompt, config) for s in limit_samples(task.samples, args.per_subtask)]
    prompt_tokens = sum(len(backend._encode(r.prompt)) for r in requests)
    print(f"{len(requests)} prompts, {prompt_tokens} prompt tokens, {args.max_new_tokens} new tokens max, batch {args.batch_size}")

    planned_s, planned, tokens = timed(backend, requests)
    print(f"planned: {planned_s:7.1f} s  {tokens / planned_s:6.1f} new tok/s  prefix prefills={backend.stats['prefix_prefills']}")

    # The naive plan: no prefix sharing, no token budget.
    original = hf.plan_batches
    hf.plan_batches = lambda prompts, rows, budget: original(prompts, rows, 10**12, min_prefix=10**9)
    try:
        naive_s, naive, _ = timed(backend, requests)
    finally:
        hf.plan_batches = original
    print(f"naive:   {naive_s:7.1f} s  {tokens / naive_s:6.1f} new tok/s")
    same = sum(planned[i] == naive[i] for i in planned)
    print(f"identical completions: {same}/{len(requests)}")
    print(f"speed-up (naive time / planned time): {naive_s / planned_s:.2f}x")


if __name__ == "__main__":
    main()
