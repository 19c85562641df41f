"""Reading a verdict out of a judge's reply, bound to the judge's own words.

Every parser follows the same rules, so a hostile answer cannot grade itself:

1. Candidates are all matches of the verdict syntax in the reply (FastChat's
   ``[[rating]]`` with its ``[rating]`` fallback, ``[[A]]``/``[[B]]``/``[[C]]``,
   ``Grammar: 8/10``...).
2. A candidate inside quotation marks on its line ("…", “…”, `…`, «…») is the
   judge quoting something -- the answer, or the prompt's own example
   ``"Rating: [[5]]"`` -- and is set aside (a quote holding only the verdict,
   ``"[[A]]"``, is the judge's own emphasis and counts).  So is one inside a
   fenced code block or a ``>`` blockquote: code, the answer's or the
   judge's, is not a verdict (a block holding only ``Rating: [[7]]`` is the
   judge's own formatting).
3. A candidate whose value also appears in the same syntax in the judged
   material (question, answers, references) cannot be told apart from a copy
   of it and is set aside: an answer that writes ``Rating: [[10]]`` can never
   be rated 10 by that text.  In a pairwise call (:class:`PairMaterial`) only
   the text a verdict would favour counts: ``[[A]]`` written in the answer
   shown second favours its rival, so the judge's ``[[A]]`` stands -- else an
   answer could turn each of its losses into a parse error.
4. Of the rest, the **last** is the verdict: judges are told to end with it,
   and earlier ones are drafts or restatements (Inspect's convention; FastChat
   takes the first match, which an answer can inject).  A different verdict
   in that same sentence (``[[A]] and [[B]]``, ``[[3]] or [[4]]``) makes it a hedge:
   no verdict (Arena-Hard likewise rejects replies with differing verdicts).
   So do three or more different values anywhere (``[[1]]`` ... ``[[10]]``
   one per line, a small judge's counting loop): one draft is revised, a list
   is not a verdict.
5. Nothing left: no verdict.  The caller records ``parse_error`` with the
   reason (``detail``) and keeps the raw reply; it never enters a score.

Values outside the scale (a rating of 0 or 11 on 1-10) are not verdicts either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Opening -> closing quotation marks a judge uses to quote on one line.  The
# ASCII apostrophe is left out: "the assistant's answer" is not a quote.
QUOTES = {'"': '"', "“": "”", "`": "`", "«": "»", "„": "“"}
FENCE = re.compile(r"^[ \t]*(?:```|~~~)[^\n]*$", re.MULTILINE)  # a Markdown code fence line
OWN_LINE = re.compile(r"\s*(?:[A-Za-z][A-Za-z ]{0,30}:)?[\s*_.]*")  # what may surround a verdict alone in a blockquote
# A line of a grade sheet ("Grammar: 8/10", "**Age group:** E (10-12)", "[[7]]"): a
# code block made only of these is the judge formatting its grades, not code.
GRADE_LINE = re.compile(r"[ \t*_#-]*(?:[A-Za-z][\w '()-]{0,40}[*_]*:[ \t*_]*)?[\w\[\]./()+ -]{1,24}[ \t.*_]*")
BLOCKQUOTE = re.compile(r"[ \t]*(?:>[ \t]*)+")  # a Markdown blockquote line's marker(s)
SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")  # between two verdicts: a revision, not a hedge
MAX_REVISIONS = 1  # a draft verdict, then the final one; more different values are a list, not revisions


@dataclass(frozen=True)
class Parsed:
    """A parser's result: the verdict (None: none found) and how it was found."""

    verdict: float | str | dict[str, float | str] | None
    detail: str | None = None
    quoted: int = 0  # candidates set aside as quoted / copied from the material


Parser = Callable[[str, Sequence[str]], Parsed]  # (reply, judged material) -> Parsed


@dataclass(frozen=True)
class PairMaterial(Sequence[str]):
    """The judged material of a pairwise call, by whose text it is (as a
    sequence: every text).  A verdict copied from the text it favours is an
    injection; from the rival's text, copying it would only hurt its author."""

    shared: tuple[str, ...] = ()  # question, references
    first: tuple[str, ...] = ()  # the answer(s) shown first
    second: tuple[str, ...] = ()

    def __getitem__(self, index):  # type: ignore[override] - a plain tuple's indexing
        return (*self.shared, *self.first, *self.second)[index]

    def __len__(self) -> int:
        return len(self.shared) + len(self.first) + len(self.second)

    def favouring(self, verdict: object) -> tuple[str, ...]:
        """The texts where ``verdict`` (``first`` / ``second``; anything else, e.g. a tie,
        helps whichever answer is losing) would be an injection."""
        own = {"first": self.first, "second": self.second}.get(verdict, (*self.first, *self.second))  # type: ignore[call-overload]
        return (*self.shared, *own)


def _copies(pattern: Pattern, material: Sequence[str]) -> Callable[[float | str], bool]:
    """Whether a value of ``pattern`` may be copied from ``material`` (rule 3)."""
    if isinstance(material, PairMaterial):
        return lambda value: value in set().union(*(pattern.values(m) for m in material.favouring(value)))
    copied = set().union(*(pattern.values(m) for m in material)) if material else set()
    return lambda value: value in copied


def _quote_around(line: str, start: int, end: int) -> str | None:
    """The text between the quotation marks enclosing ``line[start:end]``, if any."""
    before, after = line[:start], line[end:]
    for opening, closing in QUOTES.items():
        open_at = before.rfind(opening)
        if open_at < 0 or closing not in after:
            continue
        if opening == closing and before.count(opening) % 2 == 0:
            continue
        if opening != closing and before.rfind(closing) > open_at:
            continue
        return line[open_at + 1 : end + after.index(closing)]
    return None


def code_blocks(text: str) -> list[tuple[int, int]]:
    """(start, end) of the body of every closed fenced code block in ``text``
    (an unclosed fence hides nothing: the copy rule still guards the answer)."""
    fences = list(FENCE.finditer(text))
    return [(a.end(), b.start()) for a, b in zip(fences[::2], fences[1::2])]


def _fenced(text: str, match: re.Match[str], blocks: Sequence[tuple[int, int]]) -> bool:
    """Whether a candidate sits in a code block (an answer's code, or code the
    judge wrote), unless the block is only grade lines (``GRADE_LINE``)."""
    for start, end in blocks:
        if start <= match.start() and match.end() <= end:
            return not all(GRADE_LINE.fullmatch(line) for line in text[start:end].splitlines() if line.strip())
    return False


def _quoted(text: str, match: re.Match[str], blocks: Sequence[tuple[int, int]] = ()) -> bool:
    """Whether a candidate is quoted (on its line, or in a Markdown ``>``
    blockquote) or in one of the code ``blocks``.  A quote holding nothing but
    the verdict (``"[[A]]"``, ``> Rating: [[3]]``) is the judge stressing its
    own verdict, not a quote."""
    if _fenced(text, match, blocks):
        return True
    line_start = text.rfind("\n", 0, match.start()) + 1
    line_end = text.find("\n", match.end())
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    quote = BLOCKQUOTE.match(line)
    if quote and not OWN_LINE.fullmatch(line[quote.end() :].replace(match.group(0), "", 1)):
        return True
    inside = _quote_around(line, match.start() - line_start, match.end() - line_start)
    return inside is not None and inside.strip(" .,:;!*_") != match.group(0)


@dataclass(frozen=True)
class Pattern:
    """One verdict syntax: a regex whose group 1 is the value, and how to read it."""

    regex: re.Pattern[str]
    read: Callable[[str], float | str | None]  # None: not a valid value (out of range, unknown label)
    copies: re.Pattern[str] | None = None  # its syntax in the judged material, if looser than ``regex``

    def values(self, text: str) -> set[float | str]:
        """The valid values written in ``text`` (judged material) in this syntax."""
        found = (self.copies or self.regex).finditer(text)
        return {v for m in found if (v := self.read(m.group(1))) is not None}


def own_verdict(reply: str, patterns: Sequence[Pattern], material: Sequence[str]) -> Parsed:
    """The judge's own last verdict in ``reply`` (rules in the module docstring).

    ``patterns`` are tried in order; a later one (a looser fallback syntax) is
    used only when an earlier one matches nowhere in the reply.
    """
    for pattern in patterns:
        matches = list(pattern.regex.finditer(reply))
        if not matches:
            continue
        copied = _copies(pattern, material)
        kept, quoted, invalid = [], 0, []
        blocks = code_blocks(reply)
        for m in matches:
            value = pattern.read(m.group(1))
            if value is None:
                invalid.append(m.group(0))
            elif _quoted(reply, m, blocks) or copied(value):
                quoted += 1
            else:
                kept.append((value, m))
        if kept:
            shown = {v: m.group(0) for v, m in reversed(kept)}  # each value as first written
            if len(shown) >= MAX_REVISIONS + 2:  # a scale listed, a counting loop: no draft-then-final
                listed = ", ".join(list(reversed(shown.values()))[:5]) + (", ..." if len(shown) > 5 else "")
                return Parsed(None, f"{len(shown)} different verdicts in the reply ({listed}): none is the final one",
                              quoted)
            value, last = kept[-1]
            rivals = [m.group(0) for v, m in kept
                      if v != value and not SENTENCE_END.search(reply, m.end(), last.start())]
            if rivals:  # "[[A]] and [[B]]", "[[3]] or [[4]]": a hedge, not a verdict
                return Parsed(None, f"conflicting verdicts in the final sentence: {', '.join([*rivals, last.group(0)])}",
                              quoted)
            note = f"{quoted} quoted candidate(s) set aside" if quoted else None
            return Parsed(value, note, quoted)
        why = []
        if quoted:
            why.append(f"{quoted} verdict(s) only inside text quoted or copied from the judged material")
        if invalid:
            why.append(f"invalid value(s) {', '.join(invalid[:3])}")
        return Parsed(None, "no verdict of the judge's own: " + "; ".join(why), quoted)
    return Parsed(None, "no verdict in the reply")


# A number as judges write it (7, 7.5, 7., .5, -3), optionally out of a
# scale (8/10, 8 out of 10).  Signs are matched so that [[-3]] is named as an invalid value.
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*(?:/|(?i:out of))\s*\d+(?:\.\d+)?)?"
OUT_OF = re.compile(r"\s*(?:/|out of)\s*", re.IGNORECASE)


def _number(low: float, high: float) -> Callable[[str], float | None]:
    """Read ``NUMBER`` on ``low``-``high``: None off the scale, or when it is
    given out of another scale (``4/5`` is not 4 on 1-10, and not 8 either:
    the judge was told the scale, so another one is a reply to set aside)."""

    def read(text: str) -> float | None:
        value, *scale = OUT_OF.split(text, maxsplit=1)
        try:
            number = float(value)
            if scale and float(scale[0]) != high:
                return None
        except ValueError:
            return None
        return number if low <= number <= high else None

    return read


def rating(low: float = 1, high: float = 10) -> Parser:
    """FastChat's single-answer grade: ``[[5]]``, else ``[5]``, on ``low``–``high``
    (``[[8/10]]`` is read as 8 when ``high`` is 10; ``[[4/5]]`` is no verdict)."""
    patterns = [
        Pattern(re.compile(rf"\[\[\s*({NUMBER})\s*\]\]"), _number(low, high)),
        Pattern(re.compile(rf"\[\s*({NUMBER})\s*\]"), _number(low, high)),
    ]
    return lambda reply, material: own_verdict(reply, patterns, material)


def choice(labels: dict[str, str]) -> Parser:
    """A pairwise verdict ``[[A]]`` / ``[[B]]`` / ``[[C]]``: ``labels`` maps the
    judge's label to its meaning, e.g. ``{"A": "first", "B": "second", "C": "tie"}``."""
    alternatives = "|".join(re.escape(k) for k in sorted(labels, key=len, reverse=True))
    upper = {k.upper(): v for k, v in labels.items()}
    pattern = Pattern(re.compile(rf"\[\[\s*({alternatives})\s*\]\]", re.IGNORECASE), lambda v: upper.get(v.upper()))
    return lambda reply, material: own_verdict(reply, [pattern], material)


PAIRWISE_LABELS = {"A": "first", "B": "second", "C": "tie"}  # FastChat's pair-v2 output format


@dataclass(frozen=True)
class Criterion:
    """One named criterion of a rubric.

    ``labels`` makes it categorical (e.g. age groups ``A``–``F``); otherwise
    it is a number on ``low``–``high``.  ``pattern`` overrides how it is
    found; by default ``<name>`` (or any of ``aliases``), a colon, dash, ``=``,
    ``is`` or table bar, or a short qualifier and a colon, then the value
    (``Grammar: 8/10``, ``**Creativity** - 7``, ``Consistency with the
    beginning: 9``, ``| Grammar | 8 |``).  The name right before a value
    (``Grammar 8/10``) counts only in a reply that labels none: prose after
    the grades ("beyond age group C") is not a grade.
    """

    name: str
    low: float = 1
    high: float = 10
    labels: tuple[str, ...] = ()
    required: bool = True
    aliases: tuple[str, ...] = ()
    pattern: str | None = None
    description: str = ""
    values: tuple[float, ...] = field(default=())  # allowed numbers (e.g. 0, 0.5, 1); empty: any in range

    def patterns(self) -> list[Pattern]:
        """How the criterion's value is found, most explicit first (``own_verdict``
        falls back to a later pattern only when an earlier one matches nowhere)."""
        if self.pattern:
            return [Pattern(re.compile(self.pattern, re.IGNORECASE), self._read)]
        names = "|".join(re.escape(n) for n in (self.name, *self.aliases))
        # The name, then a separator; or a short qualifier ending in a colon, as
        # judges echo the prompt's wording ("Consistency with the story's beginning: 9/10").
        separator = r"(?:[:=\-–|]|is)"
        lead = rf"(?<![\w-])(?:{names})\b(?:[^\n:\d.!?]{{1,40}}?:|[*_\s]*SEPARATOR)[*_\s|]*"
        labelled = self._regex(lead.replace("SEPARATOR", separator))
        either = self._regex(lead.replace("SEPARATOR", separator + "?"))
        bare = self._regex(rf"(?<![\w-])(?:{names})\b[*_\s]*")
        # Either spelling in the material is a copy: a story's "Grammar 10" never becomes the judge's "Grammar: 10".
        return [Pattern(labelled, self._read, either), Pattern(bare, self._read, either)]

    def _regex(self, lead: str) -> re.Pattern[str]:
        if self.labels:
            choices = "|".join(re.escape(lab) for lab in self.labels)
            if all(len(lab) == 1 for lab in self.labels):
                # A letter grade stands alone: in "Age: a teenager", "Age group: A young
                # child" or "Age: a 6-year-old" the letter is an article, not group A.
                lower = "|".join(re.escape(lab.lower()) for lab in self.labels)
                choices = f"(?-i:{choices})(?![^\\S\\n]*[^\\W\\d_])|(?-i:{lower})(?![^\\S\\n]*[^\\W_])"
            return re.compile(rf"{lead}\(?({choices})\b", re.IGNORECASE)
        return re.compile(rf"{lead}\(?({NUMBER})", re.IGNORECASE)

    def _read(self, text: str) -> float | str | None:
        if self.labels:
            upper = {lab.upper(): lab for lab in self.labels}
            return upper.get(text.upper())
        value = _number(self.low, self.high)(text)
        if value is not None and self.values and value not in self.values:
            return None
        return value


def rubric(criteria: Sequence[Criterion]) -> Parser:
    """One value per criterion, each bound to the judge's own last statement of it.

    The verdict is ``{criterion name: value}``.  A required criterion without
    a value makes the whole reply verdict-less (the values found are named in
    ``detail``); an optional one is simply absent.
    """
    compiled = [(c, c.patterns()) for c in criteria]

    def parse(reply: str, material: Sequence[str]) -> Parsed:
        found: dict[str, float | str] = {}
        missing, notes, quoted = [], [], 0
        for criterion, patterns in compiled:
            parsed = own_verdict(reply, patterns, material)
            quoted += parsed.quoted
            if parsed.verdict is None:
                if criterion.required:
                    missing.append(f"{criterion.name} ({parsed.detail})")
            else:
                found[criterion.name] = parsed.verdict
                if parsed.detail:
                    notes.append(f"{criterion.name}: {parsed.detail}")
        if missing:
            return Parsed(None, f"missing {'; '.join(missing)}; found {found}", quoted)
        return Parsed(found, "; ".join(notes) or None, quoted)

    return parse
