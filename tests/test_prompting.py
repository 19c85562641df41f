"""Shared prompting modes: shot selection, chat/no-chat assembly, system message, CoT answer location."""

from __future__ import annotations


import pytest

from evalsuite.errors import UserError
from evalsuite.prompting import Turn, after_last, assemble, select_shots
from evalsuite.task import TaskContext

from tests.conftest import DATA_DIR as DATA
SHOTS = [Turn("Q: 1+1?", "A: 2"), Turn("Q: 2+2?", "A: 4")]


def test_fixed_selection_keeps_published_order_and_excludes_the_item():
    pool = list(range(10))
    assert select_shots(pool, 3) == [0, 1, 2]
    assert select_shots(pool, 3, exclude=lambda x: x == 1) == [0, 2, 3]
    assert select_shots(pool, 0) == []
    with pytest.raises(UserError, match="only 9"):
        select_shots(pool, 10, exclude=lambda x: x == 0)


def test_random_selection_is_seeded_per_item():
    pool = list(range(50))
    a = select_shots(pool, 5, selection="random", seed=1234, key="item/7")
    assert a == select_shots(pool, 5, selection="random", seed=1234, key="item/7")
    assert a != select_shots(pool, 5, selection="random", seed=1234, key="item/8")
    assert a != select_shots(pool, 5, selection="random", seed=1, key="item/7")
    assert len(set(a)) == 5
    draws = [select_shots(pool, 49, selection="random", seed=s, key="k", exclude=lambda x: x == 3) for s in range(20)]
    assert all(3 not in d and len(d) == 49 for d in draws)


def test_text_mode_with_system_message():
    ctx = TaskContext(chat=False, system_message="Be brief.")
    p = assemble(ctx, instruction="Add.", shots=SHOTS, query="Q: 3+3?", answer_prefix="A:")
    assert p == "Be brief.\n\nAdd.\n\nQ: 1+1?\nA: 2\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?\nA:"


def test_chat_modes():
    ctx = TaskContext(chat=True, system_message="Be brief.")
    single = assemble(ctx, instruction="Add.", shots=SHOTS, query="Q: 3+3?", answer_prefix="A:")
    assert [m.role for m in single] == ["system", "user", "assistant"]
    assert single[1].content == "Add.\n\nQ: 1+1?\nA: 2\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?"
    assert single[2].content == "A:"  # the cue opens the assistant turn
    multi = assemble(ctx, instruction="Add.", shots=SHOTS, query="Q: 3+3?", answer_prefix="A:", fewshot_as_chat=True)
    assert [(m.role, m.content) for m in multi] == [
        ("system", "Be brief."), ("user", "Add.\n\nQ: 1+1?"), ("assistant", "A: 2"),
        ("user", "Q: 2+2?"), ("assistant", "A: 4"), ("user", "Q: 3+3?"), ("assistant", "A:"),
    ]
    zero = assemble(TaskContext(chat=True), instruction=None, shots=[], query="Q: 3+3?", fewshot_as_chat=True)
    assert [(m.role, m.content) for m in zero] == [("user", "Q: 3+3?")]


def test_after_last_finds_the_final_answer():
    text = "The answer is not obvious. Since 2 > 1, the answer is (B)."
    assert after_last(text, ["the answer is"]) == " (B)."
    assert after_last("no marker", ["the answer is"]) is None
    assert after_last("所以答案是C", ["答案是"]) == "C"


def test_tasks_use_the_shared_modes():
    """Both tasks honour the run's chat flag, system message and fewshot_as_chat the same way."""
    from tasks.agieval import agieval_en
    from tasks.bbh import bbh

    ctx = TaskContext(data_dir=DATA, chat=True, system_message="SYS")
    for task in (bbh(ctx, variant="fewshot", subtasks=["navigate"], fewshot_as_chat=True),
                 agieval_en(ctx, variant="fewshot", subsets=["lsat-ar"], fewshot_as_chat=True)):
        msgs = task.request(task.samples[0]).prompt
        assert msgs[0].role == "system" and msgs[0].content == "SYS"
        roles = [m.role for m in msgs[1:]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) == 8  # 3 shots + query + prefill
    plain = agieval_en(TaskContext(data_dir=DATA, chat=False, system_message="SYS"), subsets=["lsat-ar"])
    assert plain.request(plain.samples[0]).prompt.startswith("SYS\n\n")
