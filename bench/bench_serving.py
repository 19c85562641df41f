"""Serving throughput, side by side, on the same 64 BBH chain-of-thought prompts
(chat-rendered, prefilled answer cue, greedy, 256 new tokens, BBH stop strings).

1. Harness overhead: evalsuite's ``vllm:`` backend (the OpenAI-compatible
   client with its pool, retries, limits and records) against the raw
   ``openai`` client sending the same requests at the same concurrency to the
   same vLLM server.  Rounds alternate which goes first; vLLM's prefix cache is
   warmed before any timing.  Target: overhead <= 5 %.
2. Engines: evalsuite's ``vllm:`` path against its ``hf`` path, in generated
   tokens per second (both count the server's tokens for the same, checked
   identical, completions).

    python bench/bench_serving.py                 # starts its own vLLM server
    python bench/bench_serving.py --skip-hf       # overhead only (minutes less)

Print the load average with the figures: on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evalsuite.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from evalsuite.records import GenerationConfig, ModelOutput  # noqa: E402
from evalsuite.runner import limit_samples  # noqa: E402
from evalsuite.task import TaskContext  # noqa: E402
from tasks.bbh import STOPS, bbh  # noqa: E402

SUBTASKS = "navigate,boolean_expressions,date_understanding,web_of_lies,sports_understanding,causal_judgement,snarks,object_counting"


def bbh_requests(data_dir: str, subtasks: str, per_subtask: int, max_new_tokens: int) -> list[GenerateRequest]:
    task = bbh(TaskContext(data_dir=data_dir, chat=True), subtasks=subtasks.split(","))
    config = GenerationConfig(max_new_tokens=max_new_tokens, stop=STOPS)
    return [GenerateRequest(task.request(s).prompt, config) for s in limit_samples(task.samples, per_subtask)]


def run_evalsuite(backend, requests: list[GenerateRequest]) -> tuple[float, list[str], int]:
    start = time.perf_counter()
    out: dict[int, ModelOutput] = dict(backend.generate(requests))
    elapsed = time.perf_counter() - start
    texts = [out[i].completions[0] for i in range(len(requests))]
    return elapsed, texts, sum(o.completion_tokens for o in out.values())


def run_raw(base_url: str, model: str, requests: list[GenerateRequest], concurrency: int) -> tuple[float, list[str], int]:
    """The same chat requests through the official client, bounded by a semaphore."""
    from openai import AsyncOpenAI

    async def main() -> tuple[float, list[str], int]:
        client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=3600)
        slots = asyncio.Semaphore(concurrency)

        async def one(req: GenerateRequest) -> tuple[str, int]:
            async with slots:
                reply = await client.chat.completions.create(
                    model=model,
                    messages=[m.model_dump() for m in req.prompt],
                    max_tokens=req.config.max_new_tokens,
                    temperature=0,
                    stop=req.config.stop,
                    extra_body={"continue_final_message": True, "add_generation_prompt": False},
                )
                return reply.choices[0].message.content or "", reply.usage.completion_tokens

        start = time.perf_counter()
        results = await asyncio.gather(*(one(r) for r in requests))
        elapsed = time.perf_counter() - start
        await client.close()
        return elapsed, [t for t, _ in results], sum(n for _, n in results)

    return asyncio.run(main())


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVALSUITE_DATA_DIR", "../shared/data"))
    parser.add_argument("--subtasks", default=SUBTASKS)
    parser.add_argument("--per-subtask", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per client (alternating order)")
    parser.add_argument("--skip-hf", action="store_true", help="skip the (slow) hf path")
    args = parser.parse_args()

    from evalsuite.backends.vllm_server import VLLMBackend

    requests = bbh_requests(args.data_dir, args.subtasks, args.per_subtask, args.max_new_tokens)
    print(f"{len(requests)} BBH CoT prompts, greedy, {args.max_new_tokens} new tokens max, concurrency {args.concurrency}; "
          f"load average {loadavg()}")
    started = time.perf_counter()
    backend = VLLMBackend("smollm2-135m", BackendOptions(extra={"concurrency": str(args.concurrency), "loglikelihood": "off"}))
    print(f"vllm: server ready in {time.perf_counter() - started:.0f} s")
    base_url, model = backend.info.server.base_urls[0], backend.model
    try:
        _, reference, _ = run_raw(base_url, model, requests, args.concurrency)  # warms vLLM's prefix cache
        times: dict[str, list[float]] = {"evalsuite": [], "raw openai": []}
        tokens = 0
        for r in range(args.rounds):
            order = ("evalsuite", "raw openai") if r % 2 == 0 else ("raw openai", "evalsuite")
            for who in order:
                if who == "evalsuite":
                    elapsed, texts, tokens = run_evalsuite(backend, requests)
                else:
                    elapsed, texts, _ = run_raw(base_url, model, requests, args.concurrency)
                assert texts == reference, f"{who}: completions differ from the first run"
                times[who].append(elapsed)
                print(f"  round {r + 1} {who:<10} {elapsed:7.1f} s  {tokens / elapsed:6.1f} tok/s")
        ours, raw = statistics.median(times["evalsuite"]), statistics.median(times["raw openai"])
        best = min(times["evalsuite"]) / min(times["raw openai"])  # the least disturbed round of each
        print(f"harness overhead (evalsuite / raw openai client): median of {args.rounds} {ours / raw:.3f}x "
              f"({(ours / raw - 1) * 100:+.1f} %), best of {args.rounds} {best:.3f}x ({(best - 1) * 100:+.1f} %); "
              f"target <= +5 %; load average {loadavg()}")
    finally:
        backend.close()

    if args.skip_hf:
        return
    from evalsuite.backends.hf import HFBackend

    hf = HFBackend("smollm2-135m", BackendOptions())
    hf_s, hf_texts, _ = run_evalsuite(hf, requests)
    same = sum(a == b for a, b in zip(hf_texts, reference))
    print(f"hf:   {hf_s:7.1f} s  {tokens / hf_s:6.1f} tok/s")
    print(f"vllm: {ours:7.1f} s  {tokens / ours:6.1f} tok/s")
    print(f"vllm: / hf: tokens/s {hf_s / ours:.2f}x; identical completions {same}/{len(requests)}; load average {loadavg()}")


if __name__ == "__main__":
    main()
