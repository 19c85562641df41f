"""HumanEval+ scoring: evalsuite (Docker sandbox, full isolation) vs EvalPlus 0.3.1, side by side.

Two sample sets, each written once and scored by both tools at the same parallelism:

  canonical  the 164 canonical solutions
  mixed      n=10 per problem: 5 canonical, 2 original-HumanEval canonical (some wrong on
             plus inputs), `return None`, `raise ValueError`, and a 10th that loops
             forever for every 5th problem (else `return 0`)

Each tool runs in its own fresh process and is timed around its evaluation call
(``evalplus.evaluate.evaluate`` / ``evalsuite.scoring.score_samples``), pools and
expected-output loading included.  Warm: both expected-output caches already
filled (by an untimed first run).  Cold (--cold): both caches empty, so both
compute expected outputs first.  Prints seconds, the ratio, the load average and
whether the per-sample verdicts agree (EvalPlus's known-wrong verdicts listed).

  python bench/bench_evalplus.py --evalplus-python /tmp/evalplus-venv/bin/python
  python bench/bench_evalplus.py --evalplus-python ... --sets mixed --cold --parallel 2

The EvalPlus virtualenv: ``python -m venv V && V/bin/pip install evalplus==0.3.1``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EVALSUITE_DATA_DIR", REPO.parent / "shared" / "data"))
# EvalPlus 0.3.1 fails every HumanEval/32 solution: in ``unsafe_execute`` the
# find_zero oracle ``continue``s before ``details[i] = True; progress += 1``, so
# ``untrusted_check`` sees fewer details than inputs and returns "fail".
EVALPLUS_WRONG = {"HumanEval/32": "EvalPlus 0.3.1 fails every find_zero solution (its oracle `continue`s past "
                                  "the bookkeeping), its own canonical one included"}

EVALPLUS_DRIVER = """
import json, os, sys, time
from evalplus.evaluate import evaluate
samples, parallel = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
evaluate(dataset="humaneval", samples=samples, parallel=parallel, i_just_wanna_run=True)
print(json.dumps({"seconds": time.perf_counter() - t0}))
sys.stdout.flush()
os._exit(0)  # its stall-checker thread sleeps 20 s before the interpreter may exit
"""

EVALSUITE_DRIVER = """
import json, sys, time
from pathlib import Path
from evalsuite.scoring import score_samples
samples, out, parallel, data = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
result, _, unscored = score_samples("humaneval_plus", Path(samples), Path(out), {"workers": parallel, "k": "1"}, data)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "unscored": unscored}))
"""


def rows(name: str) -> list[dict]:
    with gzip.open(DATA / "humaneval" / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sample_sets() -> dict[str, list[dict]]:
    plus = rows("HumanEvalPlus.jsonl.gz")
    original = {p["task_id"]: p["canonical_solution"] for p in rows("HumanEval.jsonl.gz")}
    canonical = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in plus]
    mixed = []
    for i, p in enumerate(plus):
        tenth = "    while True:\n        pass\n" if i % 5 == 0 else "    return 0\n"
        bodies = ([p["canonical_solution"]] * 5 + [original[p["task_id"]]] * 2
                  + ["    return None\n", "    raise ValueError('no answer')\n", tenth])
        mixed += [{"task_id": p["task_id"], "completion": b} for b in bodies]
    return {"canonical": canonical, "mixed": mixed}


def run_evalplus(cmd: list[str], env: dict[str, str], samples: Path) -> dict:
    # evaluate() stops to ask before overwriting an earlier results file
    samples.with_name(samples.stem + "_eval_results.json").unlink(missing_ok=True)
    return run_json(cmd, env)


def run_json(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evalplus_verdicts(samples: Path) -> list[tuple[str, str, str]]:
    doc = json.loads(samples.with_name(samples.stem + "_eval_results.json").read_text())
    order: dict[str, int] = {}
    out = []
    for line in samples.read_text().splitlines():
        tid = json.loads(line)["task_id"]
        res = doc["eval"][tid][order.get(tid, 0)]
        order[tid] = order.get(tid, 0) + 1
        out.append((tid, res["base_status"], res["plus_status"]))
    return out


def compare(ours: list[dict], theirs: list[tuple[str, str, str]]) -> tuple[int, list[str], list[str]]:
    """(agreeing samples, disagreements explained by EvalPlus's known faults, others)."""
    agree, known, other = 0, [], []
    for v, (tid, base, plus) in zip(ours, theirs):
        mine = (v["base_status"] == "passed", v["passed"])
        ref = (base == "pass", base == "pass" and plus == "pass")
        if mine == ref:
            agree += 1
        elif tid in EVALPLUS_WRONG:
            known.append(tid)
        else:
            other.append(f"{tid}: evalsuite {v['base_status']}/{v['plus_status']} ({v['detail'][:120]}), "
                         f"EvalPlus {base}/{plus}")
    return agree, known, other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evalplus-python", required=True, help="python of a venv with evalplus==0.3.1")
    ap.add_argument("--parallel", type=int, default=2, help="EvalPlus --parallel = evalsuite workers")
    ap.add_argument("--sets", default="canonical,mixed",
                    help="comma-separated: canonical, mixed, or a samples .jsonl (task_id + completion)")
    ap.add_argument("--cold", action="store_true", help="empty expected-output caches (both tools compute them)")
    ap.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "evalsuite-bench-evalplus"))
    args = ap.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    release = work / "HumanEvalPlus.jsonl"
    if not release.exists():
        release.write_bytes(gzip.decompress((DATA / "humaneval" / "HumanEvalPlus.jsonl.gz").read_bytes()))
    sets = sample_sets()
    failures, filled = 0, False
    print(f"machine: {os.cpu_count()} CPUs; parallelism {args.parallel}; "
          f"{'cold (expected outputs computed)' if args.cold else 'warm (expected outputs cached)'}")
    for name in args.sets.split(","):
        if name in sets:
            lines = sets[name]
        else:  # a samples file of one's own, e.g. tests/data/humaneval_smollm2_completions.jsonl
            lines = [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]
            name = Path(name).stem
        samples = work / f"{name}.jsonl"
        samples.write_text("".join(json.dumps(s) + "\n" for s in lines))
        caches = {"evalplus": work / "cache-evalplus", "evalsuite": work / "cache-evalsuite"}
        if args.cold:
            caches = {k: Path(tempfile.mkdtemp(prefix=f"{k}-cold-", dir=work)) for k in caches}
        ep_env = {"HUMANEVAL_OVERRIDE_PATH": str(release), "XDG_CACHE_HOME": str(caches["evalplus"])}
        es_env = {"EVALSUITE_CACHE": str(caches["evalsuite"]), "EVALSUITE_DATA_DIR": str(DATA)}
        ep_cmd = [args.evalplus_python, "-c", EVALPLUS_DRIVER, str(samples), str(args.parallel)]
        out = work / f"{name}.verdicts.jsonl"
        es_cmd = [sys.executable, "-c", EVALSUITE_DRIVER, str(samples), str(out), str(args.parallel), str(DATA)]
        if not args.cold and not filled:  # fill both caches once, untimed (the first set's run)
            run_evalplus(ep_cmd, ep_env, samples)
            run_json(es_cmd, es_env)
            filled = True
        load0 = os.getloadavg()[0]
        theirs_s = run_evalplus(ep_cmd, ep_env, samples)["seconds"]
        load1 = os.getloadavg()[0]
        mine = run_json(es_cmd, es_env)
        load2 = os.getloadavg()[0]
        ours = [json.loads(line) for line in out.read_text().splitlines()]
        agree, known, other = compare(ours, evalplus_verdicts(samples))
        n = len(ours)
        print(f"\n[{name}] {n} samples")
        print(f"  EvalPlus 0.3.1 evaluate(parallel={args.parallel}) : {theirs_s:8.2f} s  (no isolation)")
        print(f"  evalsuite score humaneval_plus (workers={args.parallel}): {mine['seconds']:8.2f} s  "
              f"(a hardened container per worker, a fork per job)")
        print(f"  ratio (EvalPlus time / evalsuite time)        : {theirs_s / mine['seconds']:8.2f}x")
        print(f"  load average (1 min) before/between/after     : {load0:.1f} / {load1:.1f} / {load2:.1f}")
        print(f"  identical verdicts: {agree}/{n}; EvalPlus known wrong: {len(known)} "
              f"({', '.join(sorted(set(known))) or '-'}); other disagreements: {len(other)}; "
              f"unscored: {mine['unscored']}")
        for line in other[:20]:
            print("   ", line)
        failures += bool(other) or bool(mine["unscored"])
    for tid, why in EVALPLUS_WRONG.items():
        print(f"known EvalPlus fault, {tid}: {why}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
