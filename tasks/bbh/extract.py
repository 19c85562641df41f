"""Answer extraction for BIG-Bench Hard, per answer format.

Anchor harnesses score zero on perfectly good answers ("(B)" vs " (B)",
"**B**", "Yes." vs "Yes", a trailing period dropped from "24"), so the final
answer is located first and then parsed by the subtask's format:

1. the span after the *last* "answer is" / "Answer:" (chain of thought puts
   the answer at the end), else the first line of an answer-only output;
2. markdown emphasis, quotes and trailing punctuation are removed;
3. the span is parsed as a letter choice, a binary word, an integer, a
   bracket sequence or a word list.  Letter choices also accept a bare
   letter and the text of an option.  When the span holds no answer, a
   chain-of-thought output is searched for the last well-formed answer.
"""

from __future__ import annotations

import re
from enum import Enum

ANSWER_IS = re.compile(r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)
MARKDOWN = re.compile(r"[*_`\"“”]|\$")
LETTER_PAREN = re.compile(r"\(([A-Z])\)")
BARE_LETTER = re.compile(r"^\s*\(?([A-Z])\)?(?:[.):,]|\s|$)")
OPTION = re.compile(r"^\(([A-Z])\)\s*(.+?)\s*$", re.MULTILINE)
INTEGER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.0+)?(?![\d])")
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}


class Format(str, Enum):
    CHOICE = "choice"
    BINARY = "binary"
    INTEGER = "integer"
    BRACKETS = "brackets"
    WORDS = "words"


BINARY_WORDS = {
    "boolean_expressions": ("True", "False"),
    "causal_judgement": ("Yes", "No"),
    "navigate": ("Yes", "No"),
    "web_of_lies": ("Yes", "No"),
    "sports_understanding": ("yes", "no"),
    "formal_fallacies": ("valid", "invalid"),
}
FORMATS = {
    **{name: Format.BINARY for name in BINARY_WORDS},
    "object_counting": Format.INTEGER,
    "multistep_arithmetic_two": Format.INTEGER,
    "dyck_languages": Format.BRACKETS,
    "word_sorting": Format.WORDS,
}


def answer_format(subtask: str) -> Format:
    return FORMATS.get(subtask, Format.CHOICE)


def options(question: str) -> dict[str, str]:
    """Letter -> option text, from the "(A) ..." lines of a question."""
    return {m.group(1): m.group(2) for m in OPTION.finditer(question)}


def answer_span(output: str) -> str | None:
    """The text after the last "answer is", cleaned, or None."""
    matches = list(ANSWER_IS.finditer(output))
    if not matches:
        return None
    return _clean(matches[-1].group(1).split("\n")[0])


def _clean(text: str) -> str:
    text = MARKDOWN.sub("", text).strip()
    return text.rstrip(".!;,: ").strip()


def extract(output: str, subtask: str, question: str, chain_of_thought: bool) -> str | None:
    """The model's final answer in the target's canonical form, or None."""
    fmt = answer_format(subtask)
    span = answer_span(output)
    if span is None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        # Answer-only outputs answer on the first line; a chain of thought
        # that ends on a bare answer ("B", "Yes.") ends on its last.
        line = (lines[-1] if chain_of_thought else lines[0]) if lines else ""
        if not chain_of_thought or len(line.split()) <= 3:
            span = _clean(re.sub(r"^\s*A\s*:", "", line))
    if span is not None:
        found = parse(span, fmt, subtask, question)
        if found is not None:
            return found
    return _search_last(output, fmt, subtask, question) if chain_of_thought or span is None else None


def parse(span: str, fmt: Format, subtask: str, question: str) -> str | None:
    if fmt is Format.CHOICE:
        opts = options(question)
        m = LETTER_PAREN.search(span) or BARE_LETTER.match(span)
        if m and (not opts or m.group(1) in opts):
            return f"({m.group(1)})"
        lowered = span.lower()
        for letter, text in opts.items():
            if _clean(text).lower() == lowered:
                return f"({letter})"
        return None
    if fmt is Format.BINARY:
        words = BINARY_WORDS[subtask]
        hits = [w for w in re.findall(r"[A-Za-z]+", span) if w.lower() in {x.lower() for x in words}]
        if hits:
            return next(w for w in words if w.lower() == hits[0].lower())
        return None
    if fmt is Format.INTEGER:
        numbers = INTEGER.findall(span)
        if numbers:
            return str(int(float(numbers[-1].replace(",", ""))))
        words = [NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", span.lower()) if w in NUMBER_WORDS]
        return str(words[-1]) if words else None
    if fmt is Format.BRACKETS:
        brackets = re.findall(r"[\]\)\}>\[\(\{<]", span)
        return " ".join(brackets) or None
    words = re.findall(r"[a-z0-9'&-]+", span.lower())
    return " ".join(words) or None


def _search_last(output: str, fmt: Format, subtask: str, question: str) -> str | None:
    """Fallback for outputs without an "answer is": the last well-formed answer."""
    if fmt is Format.CHOICE:
        opts = options(question)
        letters = [m for m in LETTER_PAREN.findall(output) if not opts or m in opts]
        return f"({letters[-1]})" if letters else None
    if fmt is Format.BINARY:
        words = BINARY_WORDS[subtask]
        hits = re.findall(r"\b(" + "|".join(words) + r")\b", output, re.IGNORECASE)
        return next(w for w in words if w.lower() == hits[-1].lower()) if hits else None
    if fmt is Format.INTEGER:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        return parse(lines[-1], fmt, subtask, question) if lines else None
    return None


def is_correct(output: str, answer: str | None, target: str, subtask: str) -> bool:
    fmt = answer_format(subtask)
    if fmt is Format.CHOICE and not LETTER_PAREN.fullmatch(target):
        # Three upstream targets are option *texts* split across two options
        # ("Monsters, Inc"); only the literal text can match them.
        span = answer_span(output) or _clean(output.strip().split("\n")[0])
        return span.lower() == target.lower()
    return answer is not None and answer == normalize_target(target, subtask)


def normalize_target(target: str, subtask: str) -> str:
    fmt = answer_format(subtask)
    if fmt is Format.BRACKETS:
        return " ".join(re.findall(r"[\]\)\}>\[\(\{<]", target))
    if fmt is Format.WORDS:
        return " ".join(re.findall(r"[a-z0-9'&-]+", target.lower()))
    return target
