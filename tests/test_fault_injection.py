"""Runs through a fault-injecting proxy in front of the real vLLM server.

Every fifth call is a 429 with Retry-After, a 500, a 503, a dropped
connection, a reply stalled past the timeout, truncated JSON, or an error
object with status 200 -- each kind at least once.  Nothing may be lost or
scored from an error body; retries ride the faults out; without retries the
failures are generation_errors that ``--resume`` fills in, and the final
results equal a clean run's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import evalsuite
from tests.fault_proxy import FAULTS, FaultProxy

pytestmark = pytest.mark.model
# 3 x 10 short BBH items, 4 at a time: each reply takes well under the timeout
TASK = ("--tasks", "bbh", "-T", "variant=fewshot", "-T", "subtasks=navigate,web_of_lies,sports_understanding",
        "-T", "max_new_tokens=24", "--limit", "10")
TIMEOUT_S, STALL_S = 20, 25


def run(base_url: str, out: Path, *extra: str) -> Path:
    res = evalsuite("run", "--model", "openai:", "-M", f"base_url={base_url}", "-M", "concurrency=4",
                    "-M", f"timeout={TIMEOUT_S}", *extra, *TASK, "-o", str(out))
    assert res.returncode == 0, res.stderr
    (run_dir,) = out.iterdir()
    return run_dir


def samples(run_dir: Path) -> dict[str, dict]:
    return {r["sample_id"]: r for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["tasks"]


@pytest.fixture(scope="module")
def clean(vllm_server, tmp_path_factory) -> Path:
    return run(vllm_server.base_url, tmp_path_factory.mktemp("clean"))


def test_without_retries_faults_become_generation_errors_and_resume_fills_them(vllm_server, clean, tmp_path):
    expected = samples(clean)
    with FaultProxy(vllm_server.root, fault_every=5, stall_s=STALL_S).running() as proxy:
        faulty = run(f"{proxy.url}/v1", tmp_path, "-M", "max_retries=0")
        assert set(proxy.injected) == set(FAULTS)
        got = samples(faulty)
        assert got.keys() == expected.keys()  # nothing lost
        errors = [r for r in got.values() if r["score"]["status"] == "generation_error"]
        assert errors, "no request failed: the proxy injected nothing"
        for r in got.values():
            if r["score"]["status"] == "generation_error":
                # never scored from an error body: no output, the reason on one line
                assert r["output"] is None and r["score"]["metrics"] == {}
                assert r["error"] and "\n" not in r["error"] and r["error"] == r["score"]["detail"]
            else:
                assert r["output"]["completions"] == expected[r["sample_id"]]["output"]["completions"]
        reasons = " | ".join(r["error"] for r in errors)
        assert "HTTP 429" in reasons or "HTTP 5" in reasons or "malformed reply" in reasons or "no reply" in reasons
        counts = results(faulty)["bbh"]["status_counts"]
        assert counts.get("generation_error") == len(errors)

        proxy.fault_every = 0  # the outage is over
        res = evalsuite("run", "--resume", str(faulty))
        assert res.returncode == 0, res.stderr
    resumed = samples(faulty)
    assert all(r["score"]["status"] == "scored" for r in resumed.values())
    assert {k: r["output"]["completions"] for k, r in resumed.items()} == {k: r["output"]["completions"] for k, r in expected.items()}
    assert results(faulty) == results(clean)


def test_retries_ride_out_every_fault_kind(vllm_server, clean, tmp_path):
    with FaultProxy(vllm_server.root, fault_every=5, stall_s=STALL_S).running() as proxy:
        faulty = run(f"{proxy.url}/v1", tmp_path)
    assert set(proxy.injected) == set(FAULTS)
    got, expected = samples(faulty), samples(clean)
    assert all(r["score"]["status"] == "scored" for r in got.values())
    assert {k: r["output"]["completions"] for k, r in got.items()} == {k: r["output"]["completions"] for k, r in expected.items()}
    assert results(faulty) == results(clean)
