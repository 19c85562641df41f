"""AGIEval gold labels, option prefixes and answer extraction / comparison.

Rules (the task docstring summarises them):

* Options are identified by POSITION: option k is letter "ABCDEFG"[k], whatever
  prefix the option string carries ("(A)", "A．", "   A.", "A ", none, or a
  wrong letter).  Gold labels are letters mapped to positions.
* Gold is a set of positions: "D" -> {3}; "AD" / "A B D" / ["A", "D"] -> {0, 3}.
  Items are compared as exact sets (a single-answer item is a 1-element set).
* Cloze answers are compared after math normalisation (see :func:`math_equal`).
"""

from __future__ import annotations

import re
from fractions import Fraction

from evalsuite.prompting import after_last

LETTERS = "ABCDEFG"

# -- options -------------------------------------------------------------------

_PAREN = re.compile(r"^\s*[\(（]\s*([A-G])\s*[\)）]\s*")
_DOTTED = re.compile(r"^\s*([A-G])\s*[.．、:：]\s*")
_BARE = re.compile(r"^\s*([A-G])\s+")


def option_prefix(option: str, position: int) -> tuple[str, str]:
    """(kind, text without prefix): kind is standard | restyled | relettered | unlettered.

    ``standard`` = "(X)" with X the position letter; ``restyled`` = the right
    letter in another style ("A．", "   A.", "A "); ``relettered`` = a letter
    that disagrees with the position; ``unlettered`` = no prefix at all.
    """
    letter = LETTERS[position]
    for pattern in (_PAREN, _DOTTED, _BARE):
        m = pattern.match(option)
        if m and (pattern is not _BARE or m.group(1) == letter):
            kind = "relettered" if m.group(1) != letter else ("standard" if pattern is _PAREN and option.startswith("(") else "restyled")
            return kind, option[m.end() :].strip()
    return "unlettered", option.strip()


def display_options(options: list[str], normalize: bool) -> tuple[list[str], list[str]]:
    """Options as shown to the model, and each option's prefix kind.

    ``normalize`` rewrites every prefix as "(X)" by position (standard options
    are unchanged), so the letters the model sees agree with position scoring.
    """
    kinds, shown = [], []
    for i, opt in enumerate(options):
        kind, text = option_prefix(opt, i)
        kinds.append(kind)
        shown.append(f"({LETTERS[i]}){text}" if normalize and kind != "standard" else opt)
    return shown, kinds


def option_text(option: str, position: int) -> str:
    return option_prefix(option, position)[1]


# -- gold labels ---------------------------------------------------------------


def gold_letters(label: object) -> tuple[list[str], str | None]:
    """Sorted gold letters and the quirk they show, if any.

    Quirks: ``multi_letter_string`` ("AD", "A B D" in a single-answer subset),
    ``label_stray_characters`` (jec-qa-ca line 48: ["A", "C", "D", "。"]; the
    non-letters are dropped), ``empty_label`` (no letter at all).
    """
    raw = [str(x) for x in label] if isinstance(label, list) else list(re.sub(r"[\s,、]", "", str(label or "")))
    letters = sorted({x.strip().upper() for x in raw if x.strip().upper() in LETTERS})
    if not letters:
        return [], "empty_label"
    if len(letters) < len([x for x in raw if x.strip()]):
        return letters, "label_stray_characters"
    if not isinstance(label, list) and len(letters) > 1:
        return letters, "multi_letter_string"
    return letters, None


# -- extraction ------------------------------------------------------------------

MARKERS = {
    "en": ["the answer is therefore", "the answer is", "answer is", "answer:"],
    "zh": ["答案是", "答案为", "答案：", "答案:", "我们应选择", "应选择", "应选", "故选", "因此选", "所以选"],
}
# A run of letters standing alone ("B", "(B)", "AC", "A、C"); ASCII lookarounds so
# Chinese text around a letter does not hide it ("选A。").  "A:" is a speaker
# label that small chat models echo, not an answer.
_LETTER_RUN = re.compile(r"(?<![A-Za-z])[\(（]?([A-G](?:\s*[,，、和]?\s*[A-G])*)[\)）]?(?![A-Za-z:：])")
_PAREN_LETTER = re.compile(r"[\(（]([A-G])[\)）]")


_LABEL_ONLY = re.compile(r"^\s*(?:A|Answer|答案)\s*[:：]\s*$")


def _first_line(text: str) -> str:
    """The first line with content; a bare speaker label ("A:") that chat models
    put on a line of its own is skipped, the answer follows it."""
    return next((line for line in text.splitlines() if line.strip() and not _LABEL_ONLY.match(line)), "")


def choice_answer(text: str, n_options: int, multi: bool, lang: str, cot: bool) -> frozenset[str] | None:
    """The chosen letters (a set) of a generated MC answer, or None.

    The answer is read after the LAST answer marker ("answer is", "答案是", …);
    without a marker, a direct (non-CoT) answer is read from the start of the
    completion, and a chain of thought falls back to its last "(X)".
    """
    valid = set(LETTERS[:n_options])
    span = after_last(text, MARKERS[lang] + MARKERS["en" if lang == "zh" else "zh"])
    if span is None and cot:
        letters = [x for x in _PAREN_LETTER.findall(text) if x in valid]
        return frozenset(letters[-1:]) or None
    line = _first_line(span if span is not None else text)
    for m in _LETTER_RUN.finditer(line):
        letters = [c for c in m.group(1) if c in LETTERS]
        if letters and all(c in valid for c in letters):
            chosen = frozenset(letters if multi else letters[:1])
            return chosen
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def cloze_answer(text: str, lang: str) -> str | None:
    """The final answer of a generated cloze (math) completion, or None.

    Priority: the last ``\\boxed{…}``; else the first line after the last
    answer marker (or of the whole completion), cut at the end of its first
    sentence.
    """
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    span = after_last(text, MARKERS["en"] + MARKERS["zh"])
    line = _first_line(span if span is not None else text).strip()
    # End of the first sentence: ". " not inside a number, or a Chinese full stop.
    line = re.split(r"(?<!\d)\.(?=\s|$)|。|\s(?:because|since|which|so that)\b", line)[0]
    line = line.strip().lstrip(":：").strip()
    return line or None


# -- math equivalence ------------------------------------------------------------

_UNIT_WORDS = (
    r"(?:units?|degrees?|cm|m|km|mm|inches|inch|feet|foot|ft|meters?|miles?|hours?|minutes?|seconds?|"
    r"dollars?|cents?|days?|years?|square|sq|cubic|个|元|米|厘米|度|岁|天|人)"
)


def normalize_math(s: str) -> str:
    """A canonical string for a MATH/Gaokao answer (Hendrycks-style, extended)."""
    s = s.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("$", "").replace("\n", "")
    s = re.sub(r"\\text\s*\{\s*\}", "", s)
    # Trailing units written as \text{...} / \mbox{...}, or as plain words after a number.
    s = re.sub(r"\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z\u4e00-\u9fff ]+\}\s*$", "", s)
    s = re.sub(r"(?<=[\d}])\s*(?:" + _UNIT_WORDS + r"(?:\^?\{?\d\}?)?\s*)+$", "", s)
    for a, b in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
                 ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\quad", ""), ("\\displaystyle", ""),
                 ("^{\\circ}", ""), ("^\\circ", ""), ("\\%", ""), ("%", ""), ("\\$", ""),
                 ("（", "("), ("）", ")"), ("，", ","), ("；", ";")):
        s = s.replace(a, b)
    s = re.sub(r"\\(?:text|mbox|mathrm)\s*\{([^{}]*)\}", r"\1", s)
    s = s.replace(" ", "").rstrip(".")
    # \frac12 -> \frac{1}{2}; \sqrt2 -> \sqrt{2}; a/b of plain numbers -> \frac{a}{b}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]+)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"^(-?\d+)/(\d+)$", r"\\frac{\1}{\2}", s)
    # "x=5", "k=\frac{1}{2}": a single variable on the left is dropped.
    s = re.sub(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)", "", s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # 2.0 -> 2
    return s


def _number(s: str) -> Fraction | float | None:
    """A numeric value for plain numbers and fractions of numbers, else None."""
    m = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s)
    try:
        if m:
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) else value
        if re.fullmatch(r"-?\d+(?:\.\d+)?", s.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s) else s):
            return Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def canonical_math(answer: str | None) -> str | None:
    """One spelling per value, so self-consistency pools equivalent answers
    ("0.5", "$\\frac{1}{2}$" and "1/2" all vote for "1/2")."""
    if answer is None:
        return None
    parts = []
    for part in answer.split(";"):
        norm = normalize_math(part)
        value = _number(norm)
        parts.append(str(Fraction(value)) if isinstance(value, Fraction) else norm)
    return ";".join(parts) or None


def _one_equal(pred: str, gold: str) -> bool:
    a, b = normalize_math(pred), normalize_math(gold)
    if a == b:
        return True
    x, y = _number(a), _number(b)
    return x is not None and y is not None and abs(float(x) - float(y)) <= 1e-6 * max(1.0, abs(float(y)))


def math_equal(pred: str | None, gold: str) -> bool:
    """Whether a predicted cloze answer equals the gold one.

    Several blanks (gold "$5$;$10$") are compared blank by blank in order; the
    prediction may separate them with ";" or, failing that, with "," / "，" / "和" / "and".
    """
    if pred is None:
        return False
    blanks = [g for g in gold.split(";") if g.strip()] or [gold]
    if len(blanks) == 1:
        return _one_equal(pred, blanks[0])
    parts = [p for p in pred.split(";") if p.strip()]
    if len(parts) != len(blanks):
        parts = [p for p in re.split(r"[;,，；]|和|\band\b", pred) if p.strip()]
    return len(parts) == len(blanks) and all(_one_equal(p, g) for p, g in zip(parts, blanks))
