"""Prompting modes shared by every task.

A task renders its pieces with its own templates (instruction, the shots as
question/answer turns, the query and an optional answer prefix); this module
assembles them the same way for every task:

* chat template off: one text, turns joined by blank lines;
* chat template on: one user message, or the shots as a multi-turn chat
  (``fewshot_as_chat``); either way the answer prefix is a prefilled
  assistant turn;
* a run-level system message (Orca-style) as a system turn, or on top of the
  text when there is no chat template.

It also holds the other shared pieces of a prompting mode: choosing k
demonstrations (fixed or seeded-random, never the item under evaluation),
locating the final answer after a chain of thought, and telling an option
letter from the English word it can also be ("A careful reading ...").
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from evalsuite.errors import UserError
from evalsuite.records import Message, Prompt
from evalsuite.task import TaskContext

T = TypeVar("T")
ShotSelection = Literal["fixed", "random"]


@dataclass(frozen=True)
class Turn:
    """One demonstration or the query: a question and (for shots) its answer."""

    question: str
    answer: str = ""


def assemble(
    ctx: TaskContext,
    *,
    instruction: str | None,
    shots: Sequence[Turn],
    query: str,
    answer_prefix: str = "",
    fewshot_as_chat: bool = False,
    turn_sep: str = "\n",
    block_sep: str = "\n\n",
) -> Prompt:
    """Build the prompt for ``query`` after ``shots`` in the run's prompting mode."""
    if not ctx.chat:
        blocks = [b for b in (ctx.system_message, instruction) if b]
        blocks += [f"{s.question}{turn_sep}{s.answer}" for s in shots]
        blocks.append(f"{query}{turn_sep}{answer_prefix}" if answer_prefix else query)
        return block_sep.join(blocks)

    messages: list[Message] = []
    if ctx.system_message:
        messages.append(Message(role="system", content=ctx.system_message))
    if fewshot_as_chat:
        lead = f"{instruction}{block_sep}" if instruction else ""
        for i, shot in enumerate(shots):
            messages.append(Message(role="user", content=(lead if i == 0 else "") + shot.question))
            messages.append(Message(role="assistant", content=shot.answer))
        first = lead if not shots else ""
        messages.append(Message(role="user", content=first + query))
        if answer_prefix:
            messages.append(Message(role="assistant", content=answer_prefix))
        return messages
    blocks = [b for b in (instruction,) if b] + [f"{s.question}{turn_sep}{s.answer}" for s in shots]
    blocks.append(query)
    messages.append(Message(role="user", content=block_sep.join(blocks)))
    # The answer cue opens the assistant's turn: left at the end of the user
    # turn, chat models echo its label ("A:") and stop.
    if answer_prefix:
        messages.append(Message(role="assistant", content=answer_prefix))
    return messages


def select_shots(
    pool: Sequence[T],
    k: int,
    *,
    selection: ShotSelection = "fixed",
    seed: int = 0,
    key: str = "",
    exclude: Callable[[T], bool] | None = None,
) -> list[T]:
    """``k`` demonstrations from ``pool``.

    ``fixed``: the first k in pool order (the benchmark's published order), the
    same for every item.  ``random``: a draw seeded by ``(seed, key)`` -- pass
    the item id as ``key`` so each item has its own draw that does not depend
    on which other items run (``--limit``, resume).  ``exclude`` drops
    candidates such as the item under evaluation itself.
    """
    candidates = [x for x in pool if exclude is None or not exclude(x)]
    if k < 0 or k > len(candidates):
        raise UserError(f"asked for {k} demonstrations but only {len(candidates)} are available")
    if selection == "fixed":
        return list(candidates[:k])
    if selection == "random":
        return random.Random(f"{seed}:{key}").sample(candidates, k)
    raise UserError(f"shot selection must be 'fixed' or 'random', got {selection!r}")


# End-of-sequence / end-of-turn markers that generations from servers or other harnesses
# can keep as text (SentencePiece, ChatML, Llama 3, GPT-2, Phi-3, Gemma, DeepSeek): what
# follows one is not the answer, and its "<" would read as a bracket in dyck_languages.
END_OF_TURN = ("</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<end_of_turn>",
               "<｜end▁of▁sentence｜>")


# Full-width ASCII forms (U+FF01-U+FF5E: "Ｂ", "（Ａ）", "：", "１２") as ASCII, the
# ideographic space as a space, and the minus signs U+2212 / U+FE63 as "-".
# Narrower than NFKC on purpose: NFKC also turns "x²" into "x2" and "½" into "1⁄2".
_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: " ", 0x2212: "-", 0xFE63: "-"}


def halfwidth(text: str) -> str:
    """``text`` with full-width letters, digits and punctuation and Unicode minus
    signs as their ASCII forms, before an answer is read from it: Chinese input
    methods type "答案是（Ｂ）" and typeset text "−12", which the extraction
    patterns (ASCII letters, "-") would otherwise miss or misread as 12."""
    return text.translate(_HALFWIDTH)


def after_last(text: str, markers: Sequence[str]) -> str | None:
    """The text after the last occurrence of any marker (case-insensitive), or None.

    Chain-of-thought outputs state the answer at the end and may mention
    "the answer is" earlier while reasoning, so the *last* marker wins.
    """
    pattern = "|".join(re.escape(m) for m in markers)
    hits = list(re.finditer(pattern, text, re.IGNORECASE))
    return text[hits[-1].end() :] if hits else None


# After a bare "A" or "I", these words make it an option letter ("A is correct",
# "A because ..."); any other word makes it the article or the pronoun.
LETTER_FOLLOWERS = frozenset(
    "is was are and or because since as which that seems appears fits matches would will should must can could "
    "might may in of from for with here".split()
)


def is_english_word(letter: str, rest: str) -> bool:
    """Whether a bare capital ``letter`` followed by ``rest`` is the article "A" or the
    pronoun "I" rather than an option letter: "A careful reading shows (C)",
    "I think (B)" -- but not "A is correct", "A.", "A, because" or "A (Damage)".
    """
    if letter not in ("A", "I"):
        return False
    word = re.match(r"\s+([A-Za-z]+)", rest)
    return word is not None and word.group(1).lower() not in LETTER_FOLLOWERS
