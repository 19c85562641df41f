"""The dispatch ceiling: how many requests/s evalsuite's driver sustains.

Starts many fake OpenAI-compatible endpoints on 127.0.0.1 (in separate
processes, so they do not share the driver's CPU), each answering every
completion after a fixed latency.  Then runs the real driver path --
``evalsuite.runner.run`` with ``--model openai:fake`` over an endpoint pool,
BBH chain-of-thought prompts, scoring and ``samples.jsonl`` -- against 1, 2,
4, ... endpoints with ``--per-endpoint`` requests in flight on each.

For every pool size it prints the ideal rate (endpoints x per-endpoint /
latency), the rate measured, their ratio, and the driver's CPU per request.
Both are differential -- (big run - small run) / (big N - small N) -- so
start-up (imports, data loading, provenance) cancels out.  The ceiling is
1 / (CPU per request): the rate at which one core is saturated by dispatch
and bookkeeping.  Throughput grows linearly with endpoints until it meets the
ceiling; the first pool size whose ratio falls below 0.8 while the driver uses
a full core is where evalsuite becomes the bottleneck.  A ratio below 0.8 with
the driver on less than a core means the machine (the fake endpoints share
its cores) is the limit, not evalsuite.

  python bench/bench_dispatch.py                                  # 1..64 endpoints x 4, 200 ms
  python bench/bench_dispatch.py --endpoints 64 --per-endpoint 8  # one point
  python bench/bench_dispatch.py --profile prof.out               # cProfile of the largest run

Report it with the load average: the endpoints share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalsuite.runner import RunConfig, run  # noqa: E402

SUBTASKS = 27  # BBH: --limit is per subtask
BBH_ITEMS = 6511
REPLY = ("Let's think step by step. We start from the first statement and follow each step in turn, "
         "keeping track of what is true at every point; nothing contradicts it. So the answer is (A).")


# -- the fake endpoints -----------------------------------------------------------


def _reply(path: str, body: dict) -> dict:
    if path.endswith("/models"):
        return {"object": "list", "data": [{"id": "fake", "object": "model", "root": "fake", "owned_by": "bench"}]}
    n = int(body.get("n", 1))
    if path.endswith("/chat/completions"):
        choices = [{"index": i, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"} for i in range(n)]
    else:
        choices = [{"index": i, "text": REPLY, "finish_reason": "stop"} for i in range(n)]
    return {"id": "x", "object": "chat.completion", "model": "fake", "choices": choices,
            "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}}


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    """Minimal HTTP/1.1 with keep-alive: enough for httpx, nothing more."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            raw = await reader.readexactly(int(headers.get("content-length", 0)))
            body = json.loads(raw) if raw else {}
            if method == "POST":
                await asyncio.sleep(latency)
            if path.endswith(("/models", "/completions")):
                status, payload = "200 OK", json.dumps(_reply(path, body)).encode()
            else:
                status, payload = "404 Not Found", b'{"error": {"message": "not found"}}'
            writer.write(f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
                         .encode() + payload)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _server_process(ports: list[int], latency: float, ready: multiprocessing.Queue) -> None:
    async def main() -> None:
        servers = [await asyncio.start_server(lambda r, w: _serve_connection(r, w, latency), "127.0.0.1", p, backlog=1024)
                   for p in ports]
        ready.put(len(servers))
        await asyncio.gather(*(s.serve_forever() for s in servers))

    asyncio.run(main())


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_endpoints(n: int, latency: float, processes: int) -> tuple[list[str], list[multiprocessing.Process]]:
    ports = _free_ports(n)
    ready: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_server_process, args=(ports[i::processes], latency, ready), daemon=True)
             for i in range(min(processes, n))]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=30)
    return [f"http://127.0.0.1:{p}/v1" for p in ports], procs


# -- the driver -------------------------------------------------------------------


def drive(urls: list[str], per_endpoint: int, limit: int, out: Path, data_dir: str | None) -> tuple[int, float, float]:
    """One real run; returns (requests, wall seconds, driver CPU seconds)."""
    config = RunConfig(
        model="openai:fake",
        tasks=("bbh",),
        limit=limit,
        output_dir=str(out),
        data_dir=data_dir,
        model_args={"base_url": ",".join(urls), "concurrency": str(per_endpoint * len(urls)),
                    "loglikelihood": "off", "prefill": "continue", "timeout": "60", "max_retries": "2"},
    )
    wall, cpu = time.perf_counter(), time.process_time()
    rundir = run(config, console=_quiet_console())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    records = rundir.samples()
    failed = sum(r.score.status.value != "scored" for r in records)
    if failed:
        raise SystemExit(f"{failed} of {len(records)} samples not scored: the bench is broken")
    shutil.rmtree(rundir.path)
    return len(records), wall, cpu


def _quiet_console():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"), force_terminal=False)


def big_limit(ideal: float, seconds: float) -> int:
    """--limit of the big run: about ``seconds`` at the ideal rate, all of BBH at most."""
    return max(8, min(math.ceil(ideal * seconds / SUBTASKS), BBH_ITEMS // SUBTASKS + 1))


def measure(urls: list[str], per_endpoint: int, latency: float, seconds: float, out: Path, data_dir: str | None) -> dict:
    ideal = len(urls) * per_endpoint / latency
    big = big_limit(ideal, seconds)
    small = max(1, big // 4)
    n1, w1, c1 = drive(urls, per_endpoint, small, out, data_dir)
    n2, w2, c2 = drive(urls, per_endpoint, big, out, data_dir)
    rate = (n2 - n1) / max(w2 - w1, 1e-9)
    cpu = (c2 - c1) / max(n2 - n1, 1)
    return {"endpoints": len(urls), "ideal": ideal, "rate": rate, "ratio": rate / ideal, "cpu_ms": cpu * 1e3,
            "cores": (c2 - c1) / max(w2 - w1, 1e-9), "requests": n2}


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a finite number > 0 of ``kind`` (int or float)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def _sizes(text: str) -> list[int]:
    """An argparse type: pool sizes, e.g. "1,2,4"."""
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers separated by commas, got {text!r}")
    return [int(p) for p in parts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=_sizes, default="1,2,4,8,16,32,64", help="pool sizes to measure (comma-separated)")
    ap.add_argument("--per-endpoint", type=_positive(int), default=4, help="requests in flight per endpoint")
    ap.add_argument("--latency", type=_positive(float), default=0.2, help="seconds each endpoint takes per request")
    ap.add_argument("--seconds", type=_positive(float), default=6.0, help="ideal duration of each big run")
    ap.add_argument("--server-processes", type=_positive(int), default=max(1, (os.cpu_count() or 2) // 2))
    ap.add_argument("--data-dir", default=os.environ.get("EVALSUITE_DATA_DIR"))
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of the driver's largest run")
    args = ap.parse_args()
    sizes = args.endpoints

    urls, procs = start_endpoints(max(sizes), args.latency, args.server_processes)
    out = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    try:
        print(f"# {max(sizes)} fake endpoints x {args.per_endpoint} in flight, {args.latency * 1e3:.0f} ms each, "
              f"BBH CoT prompts; loadavg {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} CPUs")
        print(f"{'endpoints':>9} {'ideal req/s':>12} {'measured':>10} {'ratio':>6} {'driver CPU/req':>15} {'driver cores':>13}")
        rows = []
        for n in sizes:
            row = measure(urls[:n], args.per_endpoint, args.latency, args.seconds, out, args.data_dir)
            rows.append(row)
            print(f"{n:>9} {row['ideal']:>12.0f} {row['rate']:>10.0f} {row['ratio']:>6.2f} {row['cpu_ms']:>12.3f} ms "
                  f"{row['cores']:>13.2f}", flush=True)
        cpu = sorted(r["cpu_ms"] for r in rows)[len(rows) // 2]  # median: robust to a noisy point
        ceiling = 1e3 / cpu
        # evalsuite is the bottleneck where throughput falls behind *and* the driver has a core's worth of work.
        knee = next((r["endpoints"] for r in rows if r["ratio"] < 0.8 and r["cores"] >= 0.8), None)
        lag = next((r for r in rows if r["ratio"] < 0.8 and r["cores"] < 0.8), None)
        print(f"driver CPU per request (median): {cpu:.3f} ms -> one-core ceiling {ceiling:,.0f} requests/s "
              f"({'meets' if ceiling >= 1000 else 'misses'} the 1,000 req/s target)")
        print("evalsuite becomes the bottleneck at " + (f"{knee} endpoints (ratio < 0.8 with the driver on a full core)"
                                                        if knee else "none of these sizes"))
        if lag and not knee:
            print(f"throughput fell behind from {lag['endpoints']} endpoints with the driver on only {lag['cores']:.2f} "
                  "of a core: the limit there is the machine (the fake endpoints and other load share its cores)")
        print(f"loadavg at the end: {open('/proc/loadavg').read().split()[0]}")
        if args.profile:
            import cProfile

            big = big_limit(rows[-1]["ideal"], args.seconds)
            cProfile.runctx("drive(u, k, big, out, d)", globals(),
                            {"u": urls[:max(sizes)], "k": args.per_endpoint, "big": big, "out": out, "d": args.data_dir},
                            args.profile)
            print(f"profile of the largest run: {args.profile} (python -m pstats {args.profile})")
    finally:
        for p in procs:
            p.terminate()
            p.join(5)
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
