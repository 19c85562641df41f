"""Generation throughput of the HF backend on real BBH prompts, side by side in one run.

Part 1, the batching plan (small: --small-subtasks x --small-per-subtask prompts,
--small-tokens new tokens):
  one-by-one: a naive loop, one prompt per model.generate() call;
  static:     evalsuite's static plan (prefix-shared, length-sorted batches
              through model.generate(); the fallback engine, -M engine=static);
  continuous: evalsuite's default engine (rows refilled as they finish, slot
              KV cache, shared few-shot prefixes prefilled once, greedy rows
              verifying prompt-lookup drafts).

Part 2, the 64-prompt bench of issue 12 (8 subtasks x 8 items, chat-rendered,
greedy, 256 new tokens, BBH stops):
  continuous HF engine tok/s, with and without prompt-lookup drafts, with
  PyTorch's default MKL linears instead of oneDNN (-M linear=aten, a second
  model load), and static batches, unless --skip-static;
  `evalsuite run` through the default local path (runner overhead included);
  raw vLLM tok/s on the same token ids, when the vLLM venv exists
  ($EVALSUITE_VLLM_PYTHON, default ~/.cache/evalsuite/vllm-venv-0.32.0): the
  bench starts the server `--model vllm:` manages on the converted model,
  sends all prompts at once to /v1/completions and stops it.

Every path must give identical greedy completions; the bench prints how many
agree and the tok/s ratios.  tok/s = completion tokens / wall seconds of the
generation call (prefill included, model load excluded).

    python bench/bench_generation.py                   # everything
    python bench/bench_generation.py --skip-static --skip-vllm
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from evalsuite.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from evalsuite.backends import hf  # noqa: E402
from evalsuite.backends.hf import HFBackend  # noqa: E402
from evalsuite.backends.models import resolve_model  # noqa: E402
from evalsuite.records import GenerationConfig  # noqa: E402
from evalsuite.runner import RunConfig, limit_samples, run  # noqa: E402
from evalsuite.task import TaskContext  # noqa: E402
from tasks.bbh import STOPS, bbh  # noqa: E402

BENCH_SUBTASKS = ("boolean_expressions,causal_judgement,date_understanding,disambiguation_qa,"
                  "dyck_languages,formal_fallacies,geometric_shapes,hyperbaton")
DEFAULT_VLLM = Path.home() / ".cache/evalsuite/vllm-venv-0.32.0/bin/python"


def load() -> str:
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


def prompts(data_dir: str, subtasks: str, per_subtask: int, max_new_tokens: int) -> tuple[list[str], list[GenerateRequest]]:
    """(sample ids, requests): the first ``per_subtask`` items of each subtask, as `evalsuite run --limit` picks them."""
    task = bbh(TaskContext(data_dir=Path(data_dir), chat=True), subtasks=subtasks.split(","))
    config = GenerationConfig(max_new_tokens=max_new_tokens, stop=STOPS)
    samples = limit_samples(task.samples, per_subtask)
    return [s.id for s in samples], [GenerateRequest(task.request(s).prompt, config) for s in samples]


def timed(backend: HFBackend, requests: list[GenerateRequest], engine: str, batch_size: int | None = None,
          draft_tokens: int | None = None) -> tuple[float, list[str], int]:
    """(seconds, completions in request order, completion tokens) of one generate() call."""
    saved = backend.engine, backend.batch_size, backend.engine.draft_tokens
    if engine == "static":
        backend.engine = None
    if batch_size is not None:
        backend.batch_size = batch_size
    if draft_tokens is not None:
        saved[0].draft_tokens = draft_tokens
    try:
        start = time.perf_counter()
        outputs = dict(backend.generate(requests))
        elapsed = time.perf_counter() - start
    finally:
        backend.engine, backend.batch_size, backend.engine.draft_tokens = saved
    return elapsed, [outputs[i].completions[0] for i in range(len(requests))], sum(o.completion_tokens for o in outputs.values())


def report(name: str, seconds: float, tokens: int, texts: list[str], reference: list[str]) -> float:
    same = sum(a == b for a, b in zip(texts, reference))
    rate = tokens / seconds
    print(f"  {name:<28} {seconds:8.1f} s  {rate:7.1f} tok/s  identical {same}/{len(reference)}  load {load()}", flush=True)
    return rate


def part1(backend: HFBackend, args: argparse.Namespace) -> None:
    _, reqs = prompts(args.data_dir, args.small_subtasks, args.small_per_subtask, args.small_tokens)
    print(f"\n[1] batching plans: {len(reqs)} prompts, {args.small_tokens} new tokens max", flush=True)
    cont_s, cont, tokens = timed(backend, reqs, "continuous")
    report("continuous (default)", cont_s, tokens, cont, cont)
    static_s, static, _ = timed(backend, reqs, "static", batch_size=hf.CPU_BATCH)
    report("static batches", static_s, tokens, static, cont)
    naive_s, naive, _ = timed(backend, reqs, "static", batch_size=1)
    report("one-by-one loop", naive_s, tokens, naive, cont)
    print(f"  speed-up vs one-by-one: continuous {naive_s / cont_s:.2f}x, static {naive_s / static_s:.2f}x;"
          f" continuous vs static {static_s / cont_s:.2f}x", flush=True)


def run_through_cli_path(args: argparse.Namespace, sample_ids: list[str]) -> tuple[float, list[str], int]:
    """`evalsuite run` on the same prompts, in this process: (seconds, completions, tokens).

    The seconds run from the start of generation to the last record written
    (every record's duration_s counts from its chunk's start; the 64 prompts
    are one chunk), so model loading is excluded as for the other paths.
    """
    with tempfile.TemporaryDirectory() as out:
        config = RunConfig(tasks=("bbh",), limit=args.per_subtask, output_dir=out, data_dir=args.data_dir,
                           task_params={"bbh": {"subtasks": args.subtasks, "max_new_tokens": str(args.max_new_tokens)}})
        records = run(config).samples()
    texts = {r.sample_id: r.output.completions[0] for r in records}
    seconds = max(r.duration_s for r in records)
    return seconds, [texts[k] for k in sample_ids], sum(r.output.completion_tokens for r in records)


def raw_vllm(python: Path, token_ids: list[list[int]], max_tokens: int, stops: list[str]) -> tuple[float, list[str], int]:
    """All prompts at once to a vLLM server on the embedded model (raw server throughput): (seconds, texts, tokens).

    The server is the one ``--model vllm:`` manages (float32 on CPU, as the HF backend), started and stopped here.
    """
    import httpx

    from evalsuite.backends import vllm_server

    _, (server,) = vllm_server.plan_servers(resolve_model("smollm2-135m"), BackendOptions(device="cpu"),
                                            {"vllm_python": str(python)})
    start = time.monotonic()
    vllm_server.start_servers([server], 900)
    print(f"  vLLM server ready in {time.monotonic() - start:.0f} s (log {server.log_path})", flush=True)
    try:
        with httpx.Client(base_url=server.base_url, timeout=3600) as client:
            def one(ids: list[int]) -> dict:
                body = {"model": server.served_name, "prompt": ids, "max_tokens": max_tokens, "temperature": 0.0, "stop": stops}
                reply = client.post("/completions", json=body)
                reply.raise_for_status()
                return reply.json()

            one(token_ids[0][:8])  # warm-up, not timed
            start = time.perf_counter()
            with ThreadPoolExecutor(len(token_ids)) as pool:
                replies = list(pool.map(one, token_ids))
            elapsed = time.perf_counter() - start
    finally:
        server.stop()
    return elapsed, [r["choices"][0]["text"] for r in replies], sum(r["usage"]["completion_tokens"] for r in replies)


def part2(backend: HFBackend, args: argparse.Namespace) -> None:
    sample_ids, reqs = prompts(args.data_dir, args.subtasks, args.per_subtask, args.max_new_tokens)
    ids = [backend._encode(r.prompt) for r in reqs]
    print(f"\n[2] {len(reqs)} BBH CoT prompts ({sum(map(len, ids))} prompt tokens), greedy, "
          f"{args.max_new_tokens} new tokens, stops {STOPS!r}", flush=True)
    before = dict(backend.stats)
    cont_s, cont, tokens = timed(backend, reqs, "continuous")
    rates = {"hf": report("HF continuous (default)", cont_s, tokens, cont, cont)}
    print(f"    {({k: v - before.get(k, 0) for k, v in backend.stats.items()})}", flush=True)
    if not args.skip_no_draft:
        plain_s, plain, plain_tokens = timed(backend, reqs, "continuous", draft_tokens=0)
        rates["plain"] = report("HF continuous, no drafts", plain_s, plain_tokens, plain, cont)
    if not args.skip_aten:
        aten = HFBackend("smollm2-135m", BackendOptions(extra={"linear": "aten"}))
        aten_s, aten_texts, aten_tokens = timed(aten, reqs, "continuous")
        rates["aten"] = report("HF continuous, MKL linears", aten_s, aten_tokens, aten_texts, cont)
        aten.close()
    if not args.skip_static:
        static_s, static, static_tokens = timed(backend, reqs, "static", batch_size=hf.CPU_BATCH)
        rates["static"] = report("HF static batches", static_s, static_tokens, static, cont)
    if not args.skip_run:
        run_s, via_run, run_tokens = run_through_cli_path(args, sample_ids)
        rates["run"] = report("evalsuite run (load incl.)", run_s, run_tokens, via_run, cont)
    python = Path(os.environ.get("EVALSUITE_VLLM_PYTHON", DEFAULT_VLLM)).expanduser()
    if args.skip_vllm or not python.exists():
        print(f"  raw vLLM: skipped ({'--skip-vllm' if args.skip_vllm else f'no {python}'})")
    else:
        v_s, v_texts, v_tokens = raw_vllm(python, ids, args.max_new_tokens, STOPS)
        rates["vllm"] = report("raw vLLM server", v_s, v_tokens, v_texts, cont)
    if "vllm" in rates:
        print(f"  HF continuous / vLLM: {rates['hf'] / rates['vllm']:.2f}x"
              + (f"; without drafts {rates['plain'] / rates['vllm']:.2f}x" if "plain" in rates else "")
              + (f"; evalsuite run / vLLM: {rates['run'] / rates['vllm']:.2f}x" if "run" in rates else ""))
    if "plain" in rates:
        print(f"  prompt-lookup drafts bought {rates['hf'] / rates['plain']:.2f}x")
    if "aten" in rates:
        print(f"  oneDNN linears bought {rates['hf'] / rates['aten']:.2f}x over PyTorch's default (MKL)")
    if "static" in rates:
        print(f"  HF continuous / HF static: {rates['hf'] / rates['static']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("EVALSUITE_DATA_DIR", "../shared/data"))
    parser.add_argument("--small-subtasks", default="navigate,snarks,date_understanding")
    parser.add_argument("--small-per-subtask", type=int, default=8)
    parser.add_argument("--small-tokens", type=int, default=32)
    parser.add_argument("--subtasks", default=BENCH_SUBTASKS)
    parser.add_argument("--per-subtask", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--skip-small", action="store_true", help="skip part 1")
    parser.add_argument("--skip-static", action="store_true", help="part 2 without the static engine (slow)")
    parser.add_argument("--skip-no-draft", action="store_true", help="part 2 without the no-speculation run")
    parser.add_argument("--skip-aten", action="store_true", help="part 2 without the MKL-linears run")
    parser.add_argument("--skip-run", action="store_true", help="part 2 without the `evalsuite run` path")
    parser.add_argument("--skip-vllm", action="store_true", help="part 2 without raw vLLM")
    args = parser.parse_args()

    print(f"load average at start: {load()}; {os.cpu_count()} CPUs; python {sys.version.split()[0]}", flush=True)
    start = time.perf_counter()
    backend = HFBackend("smollm2-135m", BackendOptions())
    print(f"model loaded in {time.perf_counter() - start:.1f} s; continuous engine: {backend.batch_size} rows, "
          f"{backend.kv_cache_bytes / 2**30:.1f} GiB of KV slots; static batches: {hf.CPU_BATCH} rows", flush=True)
    if not args.skip_small:
        part1(backend, args)
    part2(backend, args)
    print(json.dumps({"load_end": load()}))


if __name__ == "__main__":
    main()
