"""Answer extraction for BIG-Bench Hard, per answer format.

Anchor harnesses score zero on perfectly good answers ("(B)" vs " (B)",
"**B**", "Yes." vs "Yes", a trailing period dropped from "24"), so the final
answer is located first and then parsed by the subtask's format:

1. the text after the *last* "answer is" / "Answer:" phrase of the output,
   even when one line holds two ("the answer is (A), but ... So the answer
   is (B)": the retracted first answer does not count); the rest of that
   line, or the next line when the phrase ends its line.  Without the
   phrase, the first line of an answer-only output;
2. markdown emphasis, quotes and trailing punctuation are removed, and only
   the answer's own clause is read (a "because ..." or a parenthesised note
   after it is not part of the answer);
3. the clause is parsed by the subtask's format: a letter choice, a binary
   word, an integer, a bracket sequence or a word list (see :func:`parse`).
   When the clause holds no answer, a chain-of-thought output is searched
   for its last well-formed answer.

A clause that names two options joined by "or" / "and" / "/" / "&" / "vs."
("either (B) or (A)", "Yes or No", "8 or 9") is a hedge, not an answer: :func:`read`
reports it as ``hedged`` and :func:`extract` returns None, whichever option comes
first.  An option after "not" / "never" / "rather than" is ruled out, not named, and
a negation up to two words before a yes/no-like word turns it over ("not a liar",
"isn't valid", "not True").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from evalsuite.prompting import halfwidth, is_english_word

# "answer is" / "answer:" but not "answer is not" / "answer isn't".
ANSWER_PHRASE = re.compile(
    r"\banswer\s*(?:(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\b(?!\s*not\b|n't)\s*:?|:)", re.IGNORECASE
)
MARKDOWN = re.compile(r"[*_`\"“”]|\$")
BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
LATEX_WRAPPER = re.compile(r"\\(?:boxed|fbox|text|textbf|mathrm)\s*\{([^{}]*)\}")  # "\boxed{(B)}"
OPTION = re.compile(r"^\(([A-Z])\)\s*(.+?)\s*$", re.MULTILINE)
PAREN_LETTER = re.compile(r"\(([A-Za-z])\)")
UPPER_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
# An answer that opens with an option letter as such: "(G)", "G)", "G." or "G" alone.
BEYOND_LETTER = re.compile(r"^(?:\(([A-Za-z])\)|([A-Z])(?:\)|[.,;:!?]|\s*$))")
# A bare letter standing alone at the start: "B", "B.", "B)", "b", "B: ...", "B Maelstrom".
BARE_LETTER = re.compile(r"^\(?([A-Za-z])(?:\)|(?=[\s.,:;!?\]]|$))")
# Where the answer's clause ends: a sentence end, or a reason / a contrast after it.
CLAUSE_END = re.compile(
    r"(?<=\S)(?<!\bvs)\.(?=\s|$)|[;!?\n]|\s[–—]\s|,?\s+(?:because|since|as|which|given|due|but|however|while|whereas|"
    r"though|although|so|hence|therefore)\b",
    re.IGNORECASE,
)
# A parenthesised note with words in it: "(in alphabetical order)", "(closing the brackets)".
NOTE = re.compile(r"\s*\((?=[^()]*[A-Za-z]{2})[^()]*\)")
# A comma only as a thousands separator ("1,000"): "2,4" is not 24 (a list, or a
# decimal comma), so no number is read from it.
INTEGER = re.compile(r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?(?![\d.,]*\d)")
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
# A number in words: "eight", "twenty", "twenty-four" / "twenty four" (not 20).
NUMBER_WORD = re.compile(
    r"\b(?:(" + "|".join(TENS) + r")(?:[\s-]+(" + "|".join(list(NUMBER_WORDS)[1:10]) + r"))?|("
    + "|".join(NUMBER_WORDS) + r"))\b", re.IGNORECASE)
BRACKET = r"[\]\)\}>\[\(\{<]"
BRACKET_RUN = re.compile(BRACKET + r"(?:\s*,?\s*" + BRACKET + r")*")  # "] ) >", "]]", "], ], >"
# Joins two alternatives into a hedge: "(B) or (A)", "Yes or No", "B/C", "(A) and (C)".
HEDGE_JOIN = (r"\s*,?\s*(?:(?:or|and|and/or|nor|vs|versus)\b\.?|/|\||&)\s*"
              r"(?:maybe|possibly|perhaps|also|even|else)?\s*")
# Options named only to be ruled out: "(B), not (A)", "(C) rather than (A)".
NEGATED = re.compile(r"(?:\bnot|\bnever|\bcannot\s+be|\bthan|\binstead\s+of|\bover)\s*$", re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d+[.)])?\s*([A-Za-z0-9'&-]+)\s*[,.;]?\s*$")
WORD = re.compile(r"[a-z0-9'&-]+")
INLINE_MARKER = re.compile(r"(?<!\S)\d+[.)](?=\s)")  # "1) apple 2) banana": no target has a digit
SENTENCE_END = re.compile(r"(?<=[\w'\])])[.!?](?=\s|$)")  # "apple banana. These are sorted."


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
_NOT = r"(?:\bnot|\bcannot|n't|\bnever)\s+"  # "not", "cannot", "doesn't", "isn't", "never"


def _phrase(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Unambiguous answers that do not use the target words, per subtask: (pattern, index into
# BINARY_WORDS).  Negated forms come first: the first pattern to claim a span keeps it.
BINARY_PHRASES: dict[str, list[tuple[re.Pattern[str], int]]] = {
    "sports_understanding": [
        (_phrase(_NOT + r"(?:\w+\s+)?plausible\b|\b(?:im|un)plausible\b"), 1),  # "not (very) plausible"
        (_phrase(r"\bplausible\b"), 0),
    ],
    "web_of_lies": [
        (_phrase(_NOT + r"lies?\b"), 0),  # "does not lie", "never lies"
        (_phrase(_NOT + r"(?:tell(?:ing)?\s+the\s+truth|truthful)\b|\blies\b|\blying\b|\bliar\b"
                 r"|\btell(?:s|ing)?\s+a\s+lie\b"), 1),
        (_phrase(r"\btell(?:s|ing)?\s+the\s+truth\b|\btruthful\b|\btruth-teller\b"), 0),
    ],
    "navigate": [
        (_phrase(_NOT + r"(?:end\s+up\s+|get\s+)?(?:return|back)\b|\bnot\s+(?:back\s+)?(?:at|to)\s+the\s+start"), 1),
        # "return to the starting point", "end up back at the start" ("not" before it: see NEGATOR)
        (_phrase(r"\b(?:return(?:s|ed)?\s+to|back\s+(?:at|to)|end(?:s|ed)?\s+up\s+(?:back\s+)?(?:at|in))\s+"
                 r"the\s+start(?:ing)?(?:\s+(?:point|position))?\b"), 0),
    ],
    "formal_fallacies": [(_phrase(r"\bnot\s+(?:deductively\s+)?valid\b"), 1)],
}
QUESTIONING = re.compile(r"\b(?:whether|if)\b", re.IGNORECASE)
# A negation at most two words before a yes/no-like word turns it over: "not a liar",
# "not at all plausible", "isn't valid", "not True" (not across "but", "that"...).
NEGATOR = re.compile(
    r"(?:\bnot|\bcannot|n't|\bnever|\bhardly|\bbarely|\bscarcely)\s+"
    r"(?:(?!(?:but|and|or|so|that|because|if|whether|yet|though)\b)[\w'-]+\s+){0,2}$",
    re.IGNORECASE,
)
FORMATS = {
    **{name: Format.BINARY for name in BINARY_WORDS},
    "object_counting": Format.INTEGER,
    "multistep_arithmetic_two": Format.INTEGER,
    "dyck_languages": Format.BRACKETS,
    "word_sorting": Format.WORDS,
}


@dataclass(frozen=True)
class Hedge:
    """A clause naming several alternatives ("either (B) or (A)")."""

    alternatives: tuple[str, ...]


@dataclass(frozen=True)
class NotAnOption:
    """An answer naming a letter the question has no option for ("the answer is (G)")."""

    letter: str


@dataclass(frozen=True)
class Reading:
    """What an output answers: ``answer`` in the target's form, or None with ``hedged``
    holding the alternatives when the output named several instead of one, or
    ``beyond`` the letter it named when the question has no such option."""

    answer: str | None
    hedged: tuple[str, ...] = ()
    beyond: str | None = None

    @property
    def detail(self) -> str | None:
        if self.answer is not None:
            return None
        if self.hedged:
            return f"hedged between {' and '.join(self.hedged)}: not an answer"
        if self.beyond:
            return f"answered {self.beyond}, which is not an option"
        return "no answer found in the output"


def answer_format(subtask: str) -> Format:
    return FORMATS.get(subtask, Format.CHOICE)


def options(question: str) -> dict[str, str]:
    """Letter -> option text, from the "(A) ..." lines of a question."""
    return {m.group(1): m.group(2) for m in OPTION.finditer(question)}


def after_answer_phrase(output: str) -> str | None:
    """The raw text after the last "answer is" / "answer:" phrase, or None."""
    phrases = list(ANSWER_PHRASE.finditer(output))
    return output[phrases[-1].end():] if phrases else None


def answer_span(output: str) -> str | None:
    """The cleaned line after the last "answer is" (the next line if the phrase ends its line), or None."""
    rest = after_answer_phrase(output)
    if rest is None:
        return None
    lines = rest.split("\n")
    line = lines[0] if lines[0].strip() or len(lines) == 1 else next((x for x in lines[1:] if x.strip()), "")
    return _clean(line)


def _drop_notes(text: str) -> str:
    """``text`` without parenthesised notes, nested ones included."""
    while True:
        dropped = NOTE.sub("", text)
        if dropped == text:
            return text
        text = dropped


def _clean(text: str) -> str:
    text = LATEX_WRAPPER.sub(r"\1", MARKDOWN.sub("", text)).strip().strip("'‘’").strip()
    return text.rstrip(".!;,: ").strip().strip("'‘’")


def _clause(text: str) -> str:
    """The text up to the end of its first clause (see CLAUSE_END)."""
    m = CLAUSE_END.search(text)
    return text[: m.start()] if m else text


def read(output: str, subtask: str, question: str, chain_of_thought: bool) -> Reading:
    """The model's final answer in the target's canonical form, or why there is none."""
    output = halfwidth(output)  # "−12" is -12, not 12; "（Ｂ）" is (B)
    fmt = answer_format(subtask)
    if fmt is Format.WORDS:
        return Reading(_word_list(output, chain_of_thought))
    rest = after_answer_phrase(output)
    span = answer_span(output)
    boxed = BOXED.findall(output) if span is None else []
    if boxed:  # no answer phrase, but a boxed final answer
        span = _clean(boxed[-1])
    if span is None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        # Answer-only outputs answer on the first line; a chain of thought
        # that ends on a bare answer ("B", "Yes.") ends on its last.
        line = (lines[-1] if chain_of_thought else lines[0]) if lines else ""
        if not chain_of_thought or len(line.split()) <= 3:
            span = _clean(re.sub(r"^\s*A\s*:", "", line))
    found = parse(span, fmt, subtask, question) if span is not None else None
    if found is None and (chain_of_thought or span is None):
        # Nothing readable in the span: the last answer of the reasoning, counting
        # only what follows the last answer phrase ("Answer: Let's think ... (C)").
        found = _search_last(output if rest is None else rest, fmt, subtask, question)
    if isinstance(found, Hedge):
        return Reading(None, found.alternatives)
    if isinstance(found, NotAnOption):
        return Reading(None, beyond=found.letter)
    return Reading(found)


def extract(output: str, subtask: str, question: str, chain_of_thought: bool) -> str | None:
    """The model's final answer in the target's canonical form, or None (none, or a hedge)."""
    return read(output, subtask, question, chain_of_thought).answer


def parse(span: str, fmt: Format, subtask: str, question: str) -> str | Hedge | NotAnOption | None:
    """One answer span (already located and cleaned) in the target's form."""
    if fmt is Format.CHOICE:
        return _choice(span, options(question))
    if fmt is Format.BINARY:
        return _binary(span, subtask)
    if fmt is Format.INTEGER:
        return _integer(span)
    if fmt is Format.BRACKETS:
        return _brackets(span)
    words = WORD.findall(_drop_notes(span).lower())
    return " ".join(words) or None


# -- letter choices ----------------------------------------------------------------


def _choice(span: str, opts: dict[str, str]) -> str | Hedge | NotAnOption | None:
    """Read one option from a span: its text, "(X)", a bare letter, or the one "(X)" in the clause.

    An option's text wins over a bare letter, so "A Plasticine Crow" is the option
    of that title, not (A); a bare "A" / "I" before a word is an article or a pronoun.
    Several options in the clause are a hedge, except those negated ("(B), not (A)").
    """
    text = re.sub(r"^(?:either|both|option|choice)\s+", "", span, flags=re.IGNORECASE)
    letter, rest = _leading_option(text, opts)
    beyond = BEYOND_LETTER.match(text) if letter is None else None  # "I, Robot" may be an option's text
    named = beyond and (beyond.group(1) or beyond.group(2)).upper()
    if opts and named and named not in opts:
        # "(G), not (B)": the answer is G, which is no option; reading on (or searching
        # the reasoning) would credit a letter the output did not choose.
        return NotAnOption(f"({named})")
    if letter is None:
        clause = _clause(text)
        named = [m for m in PAREN_LETTER.finditer(clause) if (not opts or m.group(1).upper() in opts)
                 and not NEGATED.search(clause[: m.start()])]
        letters = list(dict.fromkeys(m.group(1).upper() for m in named))
        if len(letters) > 1:
            return Hedge(tuple(f"({x})" for x in letters))
        if not letters:
            return None
        letter, rest = letters[0], clause[named[0].end():]
    return _hedge_after(letter, _clause(rest), opts) or f"({letter})"


def _leading_option(text: str, opts: dict[str, str]) -> tuple[str | None, str]:
    """(letter, text after it) when ``text`` opens with an option, else (None, text)."""
    lowered = text.lower()
    named = {}  # option texts the span opens with, the longest wins
    for letter, option in opts.items():
        name = _clean(option).lower()
        if name and lowered.startswith(name) and not lowered[len(name): len(name) + 1].isalnum():
            named[letter] = len(name)
    if named:
        longest = max(named.values())
        letters = [x for x, n in named.items() if n == longest]
        # Two options with the same text (snarks/86 upstream) cannot be told apart.
        return (letters[0], text[longest:]) if len(letters) == 1 else (None, "")
    m = BARE_LETTER.match(text)
    if m is None or (opts and m.group(1).upper() not in opts):
        return None, text
    letter, rest, boxed = m.group(1), text[m.end():], "(" in m.group(0) or ")" in m.group(0)  # "(A", "A)"
    option = _clean(opts.get(letter.upper(), "")).lower()
    if not boxed:
        if letter.islower() and _clean(rest):
            return None, text  # "b is ...": a lower-case word, not a letter
        if is_english_word(letter, rest) and not (option and rest.strip().lower().startswith(option)):
            return None, text  # the article "A" / the pronoun "I", unless its option's text follows
    if option and rest.strip().lower().startswith(option):  # "(A) The Front Page": skip its text
        rest = rest.strip()[len(option):]
    return letter.upper(), rest


def _hedge_after(letter: str, rest: str, opts: dict[str, str]) -> Hedge | None:
    """A second option joined to the first by "or" / "and" / "/" in the rest of its clause."""
    m = (re.match(HEDGE_JOIN + r"(?:either\s+|option\s+)?(\S.*)", rest, re.IGNORECASE)
         or re.match(r"\s*,?\s*(\([A-Za-z]\).*)", rest))  # a list: "(A), (C)", "(A) (C)"
    if not m:
        return None
    other, _ = _leading_option(m.group(1), opts)
    if other is None:  # "(A) or maybe even (C)": the first option named after the join, unless ruled out
        named = [x.group(1).upper() for x in PAREN_LETTER.finditer(m.group(1))
                 if (not opts or x.group(1).upper() in opts) and not NEGATED.search(m.group(1)[: x.start()])]
        other = named[0] if named else None
    if other is None or other == letter:
        return None
    return Hedge((f"({letter})", f"({other})"))


# -- binary words, integers ---------------------------------------------------------


def _binary_hits(text: str, subtask: str) -> list[tuple[int, str]]:
    """(position, canonical word) of every yes/no-like answer in ``text``, in order."""
    words = BINARY_WORDS[subtask]
    taken: list[tuple[int, int]] = []
    hits: list[tuple[int, str]] = []

    def claim(m: re.Match[str], index: int) -> None:
        if not any(m.start() < end and start < m.end() for start, end in taken):
            taken.append((m.start(), m.end()))
            negated = NEGATOR.search(text[: m.start()]) is not None  # "not a liar", "not True"
            hits.append((m.start(), words[1 - index if negated else index]))

    for pattern, index in BINARY_PHRASES.get(subtask, []):
        for m in pattern.finditer(text):
            if not QUESTIONING.search(text[: m.start()]):  # "whether the sentence is plausible"
                claim(m, index)
    for m in re.finditer(r"\b(" + "|".join(words) + r")\b", text, re.IGNORECASE):
        claim(m, next(i for i, w in enumerate(words) if w.lower() == m.group(1).lower()))
    return sorted(hits)


def _binary(span: str, subtask: str) -> str | Hedge | None:
    clause = _clause(span)
    if "=" in clause:  # "not ( True ) and ( True ) = False": the result
        clause = clause.rsplit("=", 1)[1]
    hits = _binary_hits(clause, subtask) or _binary_hits(span, subtask)
    if not hits:
        return None
    words = BINARY_WORDS[subtask]
    joined = re.search(r"\b(" + "|".join(words) + r")\b" + HEDGE_JOIN + r"\b(" + "|".join(words) + r")\b",
                       clause, re.IGNORECASE)
    if joined and joined.group(1).lower() != joined.group(2).lower():
        return Hedge(tuple(w for w in words if w.lower() in (joined.group(1).lower(), joined.group(2).lower())))
    return hits[0][1]


def _integer(span: str) -> str | Hedge | None:
    """The number the answer opens with (digits or a word); the result when it opens
    with a sum ("3 + 5 = 8")."""
    clause = _clause(_drop_notes(span))
    # "3 + 5 = 8": the result; "24 = 46 - 22": the number it opens with.
    head = clause.split("=")[-1] if "=" in clause and not INTEGER.fullmatch(clause.split("=")[0].strip()) else clause
    digits = INTEGER.search(head)
    word = NUMBER_WORD.search(head)
    if word and (digits is None or word.start() < digits.start()):
        tens, units, small = (g and g.lower() for g in word.groups())
        return str(TENS[tens] + NUMBER_WORDS.get(units, 0) if tens else NUMBER_WORDS[small])
    if digits is None:
        return None
    first = str(int(float(digits.group().replace(",", ""))))
    # "8 or 9", "8/9", and a list "8, 9": two numbers are a hedge.
    joined = re.match(r"(?:" + HEDGE_JOIN + r"|\s*,\s*)(-?\d[\d,]*)\b", head[digits.end():], re.IGNORECASE)
    if joined and joined.group(1).replace(",", "") != first:
        return Hedge((first, joined.group(1).replace(",", "")))
    return first


def _brackets(span: str) -> str | Hedge | None:
    """dyck_languages: the first run of brackets, notes dropped; two runs joined by "or" are a hedge."""
    text = _drop_notes(span)
    run = BRACKET_RUN.search(text)
    if run is None:
        return None
    answer = " ".join(re.findall(BRACKET, run.group()))
    other = re.match(HEDGE_JOIN + r"(" + BRACKET_RUN.pattern + r")", text[run.end():], re.IGNORECASE)
    if other:
        return Hedge((answer, " ".join(re.findall(BRACKET, other.group(1)))))
    return answer


# -- word lists ----------------------------------------------------------------------


def _word_list(output: str, chain_of_thought: bool) -> str | None:
    """word_sorting: the words after the last answer phrase, on its line or as a list
    (one word per line, bullets, numbers), notes in parentheses dropped.  Without the
    phrase: an answer-only output from its start, a chain of thought's final list."""
    rest = after_answer_phrase(output)
    if rest is None and chain_of_thought:
        tail = output.strip().split("\n")[::-1]  # the list the reasoning ends with, read upwards
        items = _list_items(tail)[::-1]
        return " ".join(items) if len(items) > 1 else None
    lines = [_drop_notes(MARKDOWN.sub("", line)) for line in (output if rest is None else rest).split("\n")]
    lines = [line for line in lines if line.strip()]
    while lines and lines[0].rstrip().endswith(":") and len(lines) > 1:  # a heading: "Sorted list:"
        lines = lines[1:]
    if not lines:
        return None
    items = _list_items(lines)  # one word per line, with or without bullets or numbers
    if len(items) > 1:
        return " ".join(items)
    # One line: its first sentence, without inline numbers or the quotes of "['a', 'b']".
    line = SENTENCE_END.split(INLINE_MARKER.sub(" ", lines[0]), 1)[0]
    return " ".join(w.strip("'") for w in WORD.findall(_clean(line).lower()) if w.strip("'")) or None


def _list_items(lines: list[str]) -> list[str]:
    """The words of the list that opens ``lines``, one item per line."""
    items = []
    for line in lines:
        m = LIST_ITEM.match(_drop_notes(MARKDOWN.sub("", line)))
        if not m:
            break
        items.append(m.group(1).lower())
    return items


# -- fallback: the last well-formed answer of a chain of thought ----------------------


def _search_last(text: str, fmt: Format, subtask: str, question: str) -> str | Hedge | None:
    """The last well-formed answer of ``text`` (a chain of thought without a readable answer span)."""
    if fmt is Format.CHOICE:
        opts = options(question)
        hits = [m for m in UPPER_PAREN_LETTER.finditer(text) if not opts or m.group(1) in opts]
        if not hits:
            return None
        last = hits[-1].group(1)
        sentence = re.split(r"(?<=[.!?])\s+|\n", text[: hits[-1].end()])[-1]
        joined = re.search(r"\(([A-Z])\)" + HEDGE_JOIN + r"(?:either\s+|option\s+)?\(" + last + r"\)$", sentence)
        if joined and joined.group(1) != last:
            return Hedge((f"({joined.group(1)})", f"({last})"))
        return f"({last})"
    if fmt is Format.BINARY:
        for sentence in reversed(re.split(r"(?<=[.!?])\s+|\n", text)):
            hits = _binary_hits(sentence, subtask)
            if hits:
                found = _binary(_clean(sentence), subtask)
                return found if isinstance(found, Hedge) else hits[-1][1]
        return None
    if fmt is Format.INTEGER:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return _integer(lines[-1]) if lines else None
    return None


def is_correct(output: str, answer: str | None, target: str, subtask: str) -> bool:
    fmt = answer_format(subtask)
    if fmt is Format.CHOICE and not UPPER_PAREN_LETTER.fullmatch(target):
        # Three upstream targets are option *texts* split across two options
        # ("Monsters, Inc"); only the literal text can match them.
        span = answer_span(output) or _clean(output.strip().split("\n")[0])
        return span.lower() == target.lower()
    return answer is not None and answer == normalize_target(target, subtask)


def normalize_target(target: str, subtask: str) -> str:
    fmt = answer_format(subtask)
    if fmt is Format.BRACKETS:
        return " ".join(re.findall(BRACKET, target))
    if fmt is Format.WORDS:
        return " ".join(WORD.findall(target.lower()))
    return target
