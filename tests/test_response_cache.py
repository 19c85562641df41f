"""The response cache as a wrapper any backend gets from load_backend (here the mock)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from evalsuite.backends.base import BackendOptions, ChoiceRequest, GenerateRequest
from evalsuite.backends.models import load_backend
from evalsuite.backends.response_cache import CachedBackend, ResponseCache
from evalsuite.records import GenerationConfig, Message
from tests.conftest import evalsuite


def backend(cache_dir, **extra):
    return load_backend("mock:m", BackendOptions(extra={"loglikelihood": "1", **extra}, response_cache=str(cache_dir)))


def test_repeated_deterministic_requests_are_answered_from_the_cache(tmp_path):
    reqs = [GenerateRequest("a", GenerationConfig()), GenerateRequest([Message(role="user", content="b")], GenerationConfig()),
            GenerateRequest("c", GenerationConfig(temperature=0.8, seed=1)), GenerateRequest("d", GenerationConfig(temperature=0.8))]
    first = backend(tmp_path)
    assert isinstance(first, CachedBackend)
    out1 = dict(first.generate(reqs))
    first.close()
    again = backend(tmp_path)
    out2 = dict(again.generate(reqs))
    assert again.inner.calls == 1  # only the unseeded sample went to the model
    assert [out2[i].cached for i in range(4)] == [True, True, True, False]
    assert [out2[i].completions for i in range(3)] == [out1[i].completions for i in range(3)]
    lls = [ChoiceRequest("ctx", [" a", " b"])]
    assert not dict(again.loglikelihood(lls))[0].cached
    assert dict(again.loglikelihood(lls))[0].cached
    again.close()


def test_the_key_is_the_model_identity_and_the_exact_request(tmp_path):
    cache = ResponseCache(tmp_path)
    model = {"id": "m", "file_hash": "abc"}
    cache.put(model, {"prompt": "x", "max_tokens": 5}, {"text": "y"})
    assert cache.get(model, {"max_tokens": 5, "prompt": "x"}) == {"text": "y"}  # key order does not matter
    assert cache.get(model, {"prompt": "x", "max_tokens": 6}) is None
    assert cache.get({**model, "file_hash": "abd"}, {"prompt": "x", "max_tokens": 5}) is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_concurrent_writers_share_one_cache(tmp_path):
    def write(n: int) -> None:
        c = ResponseCache(tmp_path)
        for i in range(50):
            c.put({"id": "m"}, {"i": i, "writer": n}, {"v": i})
        c.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = ResponseCache(tmp_path)
    assert all(c.get({"id": "m"}, {"i": i, "writer": n}) == {"v": i} for i in range(50) for n in range(4))


def test_cache_hits_are_marked_in_samples_jsonl(tmp_path, data_dir):
    args = ("run", "--model", "mock:", "--tasks", "bbh", "-T", "subtasks=navigate", "--limit", "3", "--data-dir", str(data_dir))
    for out in ("a", "b"):
        res = evalsuite(*args, "-o", str(tmp_path / out), env={"EVALSUITE_RESPONSE_CACHE": str(tmp_path / "cache")})
        assert res.returncode == 0, res.stderr
    (a,), (b,) = (tmp_path / "a").iterdir(), (tmp_path / "b").iterdir()
    rows = lambda run: [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["output"]["cached"] for r in rows(a)] == [False] * 3
    assert [r["output"]["cached"] for r in rows(b)] == [True] * 3
    assert json.loads((a / "run.json").read_text())["command_config"]["cache"] == str(tmp_path / "cache")


def _run_with_cache(tmp_path, cache, data_dir):
    return evalsuite("run", "--model", "mock:", "--tasks", "bbh", "-T", "subtasks=navigate", "--limit", "2",
                     "--data-dir", str(data_dir), "--cache", str(cache), "-o", str(tmp_path / "out"))


def _damaged(tmp_path, kind):
    folder = tmp_path / "cache"
    if kind == "a file":
        folder.write_text("not a folder")
        return folder
    folder.mkdir()
    db = folder / "responses.sqlite"
    if kind == "garbage":
        db.write_bytes(b"SQLite format 2\0" + b"\x07" * 5000)
    elif kind == "truncated":
        c = ResponseCache(folder)
        for i in range(300):
            c.put({"id": "m"}, {"i": i}, {"v": "x" * 500})
        c.close()
        db.write_bytes(db.read_bytes()[:30000])
    else:  # another program's table of the same name
        with sqlite3.connect(db) as other:
            other.execute("CREATE TABLE responses (id INTEGER, payload BLOB)")
    return folder


@pytest.mark.parametrize("kind, message", [
    ("a file", "is a file"), ("garbage", "file is not a database"), ("truncated", "malformed"), ("foreign table", "no such column"),
])
def test_a_cache_that_cannot_be_used_is_one_error_line_before_any_work(tmp_path, data_dir, kind, message):
    res = _run_with_cache(tmp_path, _damaged(tmp_path, kind), data_dir)
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("loading model")]  # progress
    assert res.returncode == 2 and lines == [lines[0]] and lines[0].startswith("error:") and message in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


def test_a_cache_damaged_mid_run_is_turned_off_and_no_result_is_lost(tmp_path, capfd):
    first = backend(tmp_path)
    reqs = [GenerateRequest(p, GenerationConfig()) for p in ("a", "b", "c")]
    dict(first.generate(reqs[:1]))
    with sqlite3.connect(tmp_path / "responses.sqlite") as other:  # e.g. another program, or a disk error
        other.execute("DROP TABLE responses")
    out = dict(first.generate(reqs))
    first.close()
    assert sorted(out) == [0, 1, 2] and all(o.completions and not o.cached for o in out.values())
    warnings = [line for line in capfd.readouterr().err.splitlines() if "response cache" in line]
    assert len(warnings) == 1 and "turned off for this run" in warnings[0] and "no such table" in warnings[0]


def test_a_stored_row_this_version_cannot_read_is_a_miss(tmp_path):
    first = backend(tmp_path)
    reqs = [GenerateRequest("a", GenerationConfig()), GenerateRequest("b", GenerationConfig())]
    expected = dict(first.generate(reqs))
    first.close()
    with sqlite3.connect(tmp_path / "responses.sqlite") as other:
        rows = other.execute("SELECT key FROM responses ORDER BY key").fetchall()
        other.execute("UPDATE responses SET response = '{not json' WHERE key = ?", rows[0])
        other.execute("UPDATE responses SET response = '{\"completions\": 5}' WHERE key = ?", rows[1])
    again = backend(tmp_path)
    out = dict(again.generate(reqs))
    again.close()
    assert again.inner.calls == 2 and [out[i].completions for i in (0, 1)] == [expected[i].completions for i in (0, 1)]
    assert not any(o.cached for o in out.values())
