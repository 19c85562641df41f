"""Multiple choice by log-likelihood on the real SmolLM2-135M model.

HFBackend.loglikelihood runs each shared context once and scores all options
in one batched pass over its KV cache; these tests check the numbers against
a plain full-sequence forward pass and count the passes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evalsuite.backends.base import BackendOptions, ChoiceRequest
from evalsuite.errors import UserError
from evalsuite.records import Message
from evalsuite.task import TaskContext

from tests.conftest import DATA_DIR as DATA
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def backend():
    from evalsuite.backends.hf import HFBackend

    b = HFBackend("smollm2-135m", BackendOptions())
    yield b
    b.close()


def direct_logprobs(backend, ctx_ids: list[int], conts: list[list[int]]) -> list[float]:
    """Per continuation, sum of log p(token) read from ONE plain forward pass over the
    full sequences context + continuation (right-padded, no KV cache, no prefix reuse)."""
    torch = backend.torch
    width = max(len(ctx_ids) + len(c) for c in conts)
    pad = backend.tokenizer.pad_token_id
    rows = [ctx_ids + c + [pad] * (width - len(ctx_ids) - len(c)) for c in conts]
    mask = [[1] * (len(ctx_ids) + len(c)) + [0] * (width - len(ctx_ids) - len(c)) for c in conts]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor(rows, device=backend.device),
                               attention_mask=torch.tensor(mask, device=backend.device)).logits.float()
    lp = torch.log_softmax(logits, dim=-1)
    n = len(ctx_ids)
    return [float(sum(lp[r, n - 1 + k, c[k]] for k in range(len(c)))) for r, c in enumerate(conts)]


def agieval_request(scoring_format: str = "letter") -> ChoiceRequest:
    from tasks.agieval import agieval_en

    task = agieval_en(TaskContext(data_dir=DATA, chat=False), scoring="loglikelihood",
                      choice_format=scoring_format, subsets=["aqua-rat"])
    return task.request(task.samples[0])


def requests() -> list[ChoiceRequest]:
    return [
        agieval_request("letter"),  # real AGIEval zero-shot context, " (A)" … " (E)"
        agieval_request("text"),  # options of different lengths (padding inside the batch)
        ChoiceRequest("Q: not ( True ) and ( True ) is\nA: ", ["True", "False"]),  # trailing space moves
        ChoiceRequest([Message(role="user", content="Is water wet? Answer yes or no.")], ["yes", "no", "Maybe so"]),
        ChoiceRequest("x", [" y"]),  # one-token context: no cache at all
    ]


def test_matches_direct_computation(backend):
    reqs = requests()
    results = dict(backend.loglikelihood(reqs))
    assert sorted(results) == list(range(len(reqs)))
    for i, req in enumerate(reqs):
        ctx_ids, conts = backend._split_tokens(req)
        res = results[i]
        assert len(res.logprobs) == len(req.continuations) and res.token_counts == [len(c) for c in conts]
        for lp, direct in zip(res.logprobs, direct_logprobs(backend, ctx_ids, conts)):
            assert lp == pytest.approx(direct, abs=1e-4)
            assert lp < 0


def test_tokenization_is_the_natural_one(backend):
    """Context + continuation tokens equal the tokens of the full text (when the split is clean)."""
    req = ChoiceRequest("The capital of France is ", ["Paris", "London"])
    ctx_ids, conts = backend._split_tokens(req)
    for cont, ids in zip(req.continuations, conts):
        assert ctx_ids + ids == backend._encode("The capital of France is " + cont)
    assert backend.tokenizer.decode(conts[0]) == " Paris"  # the context's trailing space moved in


def test_context_runs_once_per_question(backend):
    all_reqs = requests()
    reqs = [all_reqs[0], all_reqs[3], all_reqs[4]]  # 5 + 3 + 1 options
    n_options = sum(len(r.continuations) for r in reqs)
    before = backend.stats["forward_passes"]
    list(backend.loglikelihood(reqs))
    passes = backend.stats["forward_passes"] - before
    # One context pass + one batched options pass per question (the 1-token context
    # needs no context pass), fewer than one pass per option.
    assert passes == 2 + 2 + 1
    assert passes < n_options
    # More options do not add passes.
    before = backend.stats["forward_passes"]
    list(backend.loglikelihood([ChoiceRequest("Pick a letter:", [f" {c}" for c in "ABCDEFGHIJ"])]))
    assert backend.stats["forward_passes"] - before == 2


def test_bad_requests_are_user_errors(backend):
    with pytest.raises(UserError, match="at least one continuation"):
        list(backend.loglikelihood([ChoiceRequest("context", [])]))
    with pytest.raises(UserError, match="empty continuation"):
        list(backend.loglikelihood([ChoiceRequest("context", [" a", ""])]))


def test_bbh_mc_end_to_end(backend, tmp_path):
    """BBH variant=mc through the runner's task API on the real model: acc and acc_norm per item."""
    from tasks.bbh import MC_SUBTASKS, bbh

    assert len(MC_SUBTASKS) == 24
    task = bbh(TaskContext(data_dir=DATA, chat=False), variant="mc", subtasks=["date_understanding", "object_counting"])
    items = [next(s for s in task.samples if s.subtask == n) for n in ("date_understanding", "object_counting")]
    reqs = [task.request(s) for s in items]
    assert reqs[0].continuations[0] == " (A)" and reqs[1].continuations == [f" {n}" for n in range(19)]
    assert reqs[0].context.endswith("\nA:")
    results = dict(backend.loglikelihood(reqs))
    for i, sample in enumerate(items):
        score = next(iter(task.score([(sample, results[i])])))
        best = max(range(len(results[i].logprobs)), key=results[i].logprobs.__getitem__)
        assert score.answer == sample.choices[best]
        assert score.metrics["acc"] == float(sample.choices[best] == sample.target)
        assert set(score.metrics) == {"acc", "acc_norm"}


def test_missing_capability_is_one_clean_cli_error(tmp_path):
    out = subprocess.run(
        [str(ROOT / ".venv/bin/evalsuite"), "run", "--model", "mock", "--tasks", "agieval_orca", "--limit", "1",
         "-T", "scoring=loglikelihood", "--data-dir", str(DATA), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "loglikelihood" in errors[0] and "Traceback" not in out.stderr
