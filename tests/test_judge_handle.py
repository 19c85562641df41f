"""The judge handle: batching, deduplication, the judgment log, failed calls."""

from __future__ import annotations

import pytest

from evalsuite.judging import JudgeCall, rating
from evalsuite.judging.judge import Judge, JudgeCallFailed
from evalsuite.records import GenerationConfig, JudgeInfo, Message, ModelOutput, ScoreStatus
from tests.test_compound import Echo, Flaky


def call(text: str, role: str = "turn_1") -> JudgeCall:
    return JudgeCall(role=role, mode="single", template="t", messages=(Message(role="user", content=text),),
                     parser=rating(1, 10))


def judge(backend) -> Judge:
    return Judge(backend, JudgeInfo(spec="echo", model=backend.info, generation=GenerationConfig(max_new_tokens=8)))


def test_one_batch_per_call_and_duplicates_asked_once(tmp_path):
    backend = Echo()
    j = judge(backend)
    j.open_log(tmp_path)
    out = j([call("rate [[3]]"), call("rate [[3]]", role="turn_2"), call("rate [[4]]")])
    assert len(backend.batches) == 1 and len(backend.batches[0]) == 2
    assert [x.role for x in out] == ["turn_1", "turn_2", "turn_1"]
    assert [x.verdict for x in out] == [3.0, 3.0, 4.0]  # Echo repeats the prompt's tail
    assert (tmp_path / "judgments.jsonl").read_text().count("\n") == 2


def test_a_reopened_log_answers_without_the_backend(tmp_path):
    first = judge(Echo())
    first.open_log(tmp_path)
    first([call("rate [[7]]")])
    first.close()
    backend = Echo()
    again = judge(backend)
    again.open_log(tmp_path)
    (j,) = again([call("rate [[7]]")])
    assert j.verdict == 7.0 and backend.batches == [] and again.stats["cached"] == 1


def test_failed_calls_raise_after_the_others_are_logged(tmp_path):
    j = judge(Flaky())
    j.open_log(tmp_path)
    with pytest.raises(JudgeCallFailed, match="1 judge call"):
        j([call("bad [[2]]"), call("good [[5]]")])
    assert (tmp_path / "judgments.jsonl").read_text().count("\n") == 1
    healed = Echo()
    retry = judge(healed)
    retry.open_log(tmp_path)
    out = retry([call("bad [[2]]"), call("good [[5]]")])
    assert [x.verdict for x in out] == [2.0, 5.0] and [len(b) for b in healed.batches] == [1]
    assert all(x.status is ScoreStatus.SCORED for x in out)


class Rambling(Echo):
    def generate(self, requests):
        for i, _ in enumerate(requests):
            yield i, ModelOutput(completions=["and so on and so on"], finish_reasons=["length"])


def test_a_reply_cut_at_the_token_limit_says_so(tmp_path):
    j = judge(Rambling())
    j.open_log(tmp_path)
    (out,) = j([call("rate it")])
    assert out.status is ScoreStatus.PARSE_ERROR and out.truncated
    assert "cut at max_new_tokens" in out.detail
    again = judge(Echo())
    again.open_log(tmp_path)
    assert again([call("rate it")])[0].truncated  # kept in the log


def test_self_judging_is_the_same_weights_under_any_name():
    from evalsuite.judging.judge import same_model
    from evalsuite.records import ModelInfo

    local = ModelInfo(id="smollm2-135m", backend="hf", file_hash="ab12")
    assert same_model(local, ModelInfo(id="SmolLM2-135M-Instruct.Q8_0", backend="hf", file_hash="ab12"))  # a path to it
    assert same_model(local, ModelInfo(id="smollm2-135m", backend="vllm"))  # served, unhashed
    assert not same_model(local, ModelInfo(id="smollm2-135m", backend="hf", file_hash="cd34"))  # another quantisation
    assert same_model(ModelInfo(id="m", backend="openai"), ModelInfo(id="m", backend="openai", revision="r1"))
    assert not same_model(ModelInfo(id="m", backend="hf", revision="r1"), ModelInfo(id="m", backend="hf", revision="r2"))
    assert not same_model(ModelInfo(id="judge", backend="mock"), ModelInfo(id="candidate", backend="mock"))
