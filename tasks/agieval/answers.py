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

from evalsuite.prompting import after_last, halfwidth, is_english_word

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
    "zh": ["答案是", "答案为", "答案：", "答案:", "【答案】", "我们应选择", "应选择", "应选", "故选", "因此选", "所以选"],
}
# One option reference: "(A)", "（A）", or a bare run of capitals standing alone ("B",
# "AC"; ASCII lookarounds so Chinese text around it does not hide it: "选A。").  "A:" is
# a speaker label that small chat models echo, not an answer.
_REF = r"(?:[\(（]\s*[A-G]\s*[\)）]|(?<![A-Za-z])[A-G]+(?![A-Za-z:：]))"
# A set of options: references joined by nothing, commas, "、", "and", ", and", "和", "与", "及".
_SET_SEP = r"\s*(?:[,，、/&＆]\s*(?:and\b)?|\band\b|以及|和|与|及)?\s*"
_LETTER_SET = re.compile(_REF + r"(?:" + _SET_SEP + _REF + r")*")
# Alternatives are a hedge, not an answer: "A or C", "(B)或(D)".
_HEDGE = re.compile(r"^\s*,?\s*(?:\bor\b|或者?|还是)\s*" + _REF, re.IGNORECASE)
_LOWER_PAREN = re.compile(r"[\(（]\s*([a-g])\s*[\)）]")
# An option named only to be ruled out: "not (A)", "D rather than A", "不是A".
_RULED_OUT = re.compile(r"(?:\bnot|\bnever|\bcannot\s+be|\brather\s+than|\binstead\s+of|不是|而非|并非)\s*$",
                        re.IGNORECASE)
# Where the first sentence of a line ends: "Let's think step by step. (A) is wrong. ..."
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_LABEL_ONLY = re.compile(r"^\s*(?:A|Answer|答案)\s*[:：]\s*$")


def _first_line(text: str) -> str:
    """The first line with content; a bare speaker label ("A:") that chat models
    put on a line of its own is skipped, the answer follows it."""
    return next((line for line in text.splitlines() if line.strip() and not _LABEL_ONLY.match(line)), "")


def _letter_sets(text: str, valid: set[str], keep_invalid: bool = False) -> list[tuple[re.Match[str], frozenset[str] | None]]:
    """Every option set named in ``text`` with its match; None for a hedge ("A or C").

    A bare "A" that is the English article ("A careful reading shows (C)") is skipped, and so
    is an option ruled out ("not (A)", "D rather than A", "不是A").
    A set naming a letter beyond the options is skipped too, or, with ``keep_invalid``,
    kept as an empty set when it is unmistakably an option reference (parenthesised,
    or opening the text): "(E), not (B)" answers E, which is no option.
    """
    found = []
    for m in _LETTER_SET.finditer(text):
        letters = re.findall(r"[A-G]", m.group())
        if m.group() == "A" and is_english_word("A", text[m.end():]) or _RULED_OUT.search(text[: m.start()]):
            continue
        if letters and keep_invalid and any(c not in valid for c in letters) and (
                re.match(r"[\(（]", m.group()) or not text[: m.start()].strip(" \t:：,，")):
            found.append((m, frozenset()))
            continue
        if not letters or any(c not in valid for c in letters):
            continue
        found.append((m, None if _HEDGE.match(text[m.end():]) else frozenset(letters)))
    return found


def choice_answer(text: str, n_options: int, multi: bool, lang: str, cot: bool) -> frozenset[str] | None:
    """The chosen letters (a set) of a generated MC answer, or None.

    The answer is read after the LAST answer marker ("answer is", "答案是", …): the
    first option set in the first sentence of its first line ("(A)(C)", "（A）（C）", "A and C",
    "A, C, and D", "AC" are sets; options joined by "or" are a hedge, None; an option ruled
    out, "not (A)", is skipped; "(b)" right after the marker is B).  When that sentence names no
    option (an echoed "Answer:" label before a chain of thought, "Answer: Let's think step
    by step. (A) is wrong. ..."), the conclusion after the marker counts (see :func:`_concluding_set`).  Without a marker, a
    direct answer is read from the start of the completion and a chain of thought
    (``cot``) from its conclusion.  ``multi`` does not change the reading: a set is
    read either way, so two letters given for a single-answer item are a wrong
    answer, not their first letter.
    """
    valid = set(LETTERS[:n_options])
    text = halfwidth(text)  # "答案是Ｂ", "（Ａ）（Ｃ）"
    span = after_last(text, MARKERS[lang] + MARKERS["en" if lang == "zh" else "zh"])
    body = text if span is None else span
    if span is not None or not cot:
        first = _SENTENCE_END.split(_first_line(body), 1)[0]
        if span is not None:  # right after "the answer is", "(b)" is option B, not an enumeration
            first = _LOWER_PAREN.sub(lambda m: f"({m.group(1).upper()})", first)
        on_first_line = _letter_sets(first, valid, keep_invalid=True)
        if on_first_line:
            return on_first_line[0][1] or None  # empty: a letter beyond the options, not the next one named
    return _concluding_set(body, valid)


def _concluding_set(text: str, valid: set[str]) -> frozenset[str] | None:
    """The option set of a reasoning's conclusion: in the last line that names one, its last
    parenthesised set ("so (A) fails ... (D)"), else its first bare one ("Therefore, C is correct")."""
    for line in reversed(text.splitlines()):
        found = _letter_sets(line, valid)
        boxed = [s for m, s in found if re.match(r"[\(（]", m.group())]
        if boxed or found:
            return boxed[-1] if boxed else found[0][1]
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A note in words after the answer: "30 (exactly)", "$30$ (as computed above).", "12（单位：米）".
_NOTE = re.compile(r"\s+[(（](?=[^()（）]*[^\W\d_]{2})[^()（）\\$]*[)）][.。]?$")


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every closed ``\\boxed{…}`` in ``text``, in order."""
    found = []
    for m in _BOXED.finditer(text):
        depth = 1
        for j in range(m.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                found.append((m.start(), j + 1, text[m.end():j]))
                break
    return found


def last_boxed(text: str) -> str | None:
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


# Between two boxes of one answer: a list separator, "$" and a variable's "x =" only
# ("$x = \boxed{-2}$ and $x = \boxed{3}$", "\boxed{5}；\boxed{10}").
_BOX_GAP = re.compile(r"[\s$]*(?:,|;|，|；|、|\band\b|\bor\b|和|或)?[\s$]*(?:[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*)?[\s$]*")


def _final_boxes(text: str) -> str | None:
    """The last box's content, with the boxes just before it on its line that only a list
    separator parts from it ("\\boxed{-\\sqrt{5}}, \\boxed{\\sqrt{5}}": one answer of two items,
    joined by ", "); None without a box."""
    boxes = _boxes(text)
    if not boxes:
        return None
    chosen = [boxes[-1]]
    for box in reversed(boxes[:-1]):
        gap = text[box[1]: chosen[0][0]]
        if "\n" in gap or not _BOX_GAP.fullmatch(gap):
            break
        chosen.insert(0, box)
    return ", ".join(content for _, _, content in chosen)


def cloze_answer(text: str, lang: str) -> str | None:
    """The final answer of a generated cloze (math) completion, or None.

    Priority: the last ``\\boxed{…}`` (with the boxes before it on its line that a list
    separator joins to it: one per solution or blank); else the first line after the last
    answer marker (or of the whole completion), cut at the end of its first
    sentence.
    """
    text = halfwidth(text)  # "答案：１２", "−3"
    boxed = _final_boxes(text)
    if boxed is not None:
        return boxed.strip() or None
    span = after_last(text, MARKERS["en"] + MARKERS["zh"])
    line = _first_line(span if span is not None else text).strip()
    # End of the first sentence: ". " not inside a number, or a Chinese full stop.
    # A reason after it: "30, since ...", "30 because ...", "30, so ...".
    line = re.split(r"(?<!\d)\.(?=\s|$)|。|[,，]?\s*\b(?:because|since|which|so that)\b|[,，]\s*(?:as|so|thus|hence)\b",
                    line)[0]
    line = _NOTE.sub("", line.strip()).lstrip(":：").rstrip(",，;；:：").strip()
    return line or None


# -- math equivalence ------------------------------------------------------------
#
# HF math-verify decides symbolic equality (2\sqrt{2} = \sqrt{8}, x^2+2x+1 = (x+1)^2,
# intervals, matrices, unordered solution sets).  On issue 8's requirements it is right
# about every gold matching itself, lists, integers (exact), "°", \text{even} and
# 864 \mbox{ inches}^2 (tools/compare_references.py prints the check), and wrong on two
# kinds, where our rules decide first:
#   * numbers in a base ("42_{7}", "152A_{11}"): it drops the subscript, so 42_8 and 42
#     both equal 42_{7}; here digits and base must both match;
#   * words and letter blocks written without \text ("even", "ACF", "VW"): it reads them
#     as products of symbols, so "CAF" equals "ACF", "WV" "VW" and "silent" "listen";
#     here they compare as text.
# Plain numbers compare exactly as fractions before it is asked (no float rounding: an
# integer gold never matches gold + 1, 0.333 is not 1/3), which also keeps it off the
# common case.  Solution lists without brackets are split here so that each item gets
# the same rules.

_UNIT_WORDS = (
    r"(?:units?|degrees?|cm|m|km|mm|inches|inch|feet|foot|ft|meters?|miles?|hours?|minutes?|seconds?|"
    r"dollars?|cents?|days?|years?|square|sq|cubic|个|元|米|厘米|度|岁|天|人)"
)
_SPACING = ("\\,", "\\;", "\\:", "\\quad", "\\qquad", "\\displaystyle", "~")
_BASE = re.compile(r"[0-9A-Z]+_\{?\d+\}?")
_GROUPED = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_TEXT = re.compile(r"[^\W\d_]+(?:[\s'’-][^\W\d_]+)*")  # words only, any script


def strip_math(s: str) -> str:
    r"""An answer without its wrapping: ``$…$``, ``\[…\]``, ``\(…\)``, markdown ``**`` and
    backticks, ``\boxed{}``, spacing commands,
    trailing units (``\text{ cm}``, ``\mbox{ inches}^2``, "cm"), degrees, percent,
    ``\text{…}`` around a word.  Spaces inside the expression are kept."""
    s = s.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("\\$", "").replace("$", "").replace("\n", " ").replace("\\!", "")
    s = re.sub(r"\\[\[\]()]", "", s.replace("**", "").replace("`", ""))  # **30**, `30`, \[30\], \(30\)
    for command in _SPACING:
        s = s.replace(command, " ")
    for a, b in (("（", "("), ("）", ")"), ("，", ","), ("；", ";"), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
                 ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("\\degree", ""), ("°", ""),
                 ("\\%", ""), ("%", "")):
        s = s.replace(a, b)
    s = re.sub(r"\\text\s*\{\s*\}", "", s)
    # A unit after a number: "10\text{ cm}", "864 \mbox{ inches}^2", "30 degrees".
    s = re.sub(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{\s*[a-zA-Z\u4e00-\u9fff ]+\}(?:\^\{?\d\}?)?\s*$", "", s)
    s = re.sub(r"(?<=[\d}])\s*(?:" + _UNIT_WORDS + r"(?:\^?\{?\d\}?)?\s*)+$", "", s)
    s = re.sub(r"\\(?:text|mbox|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    return s.strip().rstrip(".,;:。").strip()


def normalize_math(s: str) -> str:
    """A canonical string for a MATH/Gaokao answer (Hendrycks-style, extended)."""
    s = strip_math(s)
    for a in ("\\left", "\\right"):
        s = s.replace(a, "")
    s = s.replace(" ", "")
    # \frac12 -> \frac{1}{2}; \sqrt2 -> \sqrt{2}; a/b of plain numbers -> \frac{a}{b}
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\{([^{}]+)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = re.sub(r"^(-?\d+)/(\d+)$", r"\\frac{\1}{\2}", s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)  # 42_{7} -> 42_7
    # "x=5", "k=\frac{1}{2}": a single variable on the left is dropped.
    s = re.sub(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)", "", s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # 2.0 -> 2
    return s


def _number(s: str) -> Fraction | None:
    """The exact value of a plain number or a fraction of plain numbers, else None."""
    m = re.fullmatch(r"(-?)\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s)
    try:
        if m:
            value = Fraction(m.group(2)) / Fraction(m.group(3))
            return -value if m.group(1) else value
        plain = s.replace(",", "") if _GROUPED.fullmatch(s) else s
        return Fraction(plain) if re.fullmatch(r"-?\d+(?:\.\d+)?", plain) else None
    except (ValueError, ZeroDivisionError):
        return None


_ITEM_SEP = re.compile(r"\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+|\s*(?:或者?|和|及)\s*")


def _items(s: str) -> list[str]:
    """The items of a list answer: ``s`` split at commas, "and" and "or" (和, 或) outside
    brackets ("0, \\pi and 2\\pi", "x = 3 or x = 5": solutions are written both ways);
    one item when there is none, or when ``s`` is a number with thousands separators
    ("17,280").  A set of solutions "\\{1, 3\\}" is a list."""
    if _GROUPED.fullmatch(s):
        return [s]
    s = re.sub(r"^\\\{(.*)\\\}$", r"\1", s.strip())
    cuts = [m for m in _ITEM_SEP.finditer(s) if _depth(s[: m.start()]) == 0]
    bounds = [0, *(x for m in cuts for x in (m.start(), m.end())), len(s)]
    return [s[bounds[i]: bounds[i + 1]] for i in range(0, len(bounds), 2)]


def _depth(prefix: str) -> int:
    """How many brackets are open at the end of ``prefix``."""
    return sum(c in "([{" for c in prefix) - sum(c in ")]}" for c in prefix)


def canonical_math(answer: str | None, ordered: bool = False) -> str | None:
    """One spelling per value, so self-consistency pools equivalent answers ("0.5",
    "$\\frac{1}{2}$" and "1/2" all vote for "1/2"; list items are sorted unless
    ``ordered``: a gold of several blanks, "5;10", may be answered "5, 10", where order
    counts).  It is a valid answer itself: :func:`math_equal` judges it as it would the
    original."""
    if answer is None:
        return None
    blanks = []
    for blank in answer.split(";"):
        items = []
        for item in _items(strip_math(blank)):
            value = _number(normalize_math(item))
            items.append(str(value) if value is not None else " ".join(item.split()))
        blanks.append(", ".join(items if ordered else sorted(items)) if len(items) > 1 else items[0])
    return ";".join(blanks) or None


def _one_equal(pred: str, gold: str) -> bool:
    a, b = normalize_math(pred), normalize_math(gold)
    if a == b:
        return True
    if not a or not b:
        return False
    preds, golds = _items(strip_math(pred)), _items(strip_math(gold))
    if len(golds) > 1 or len(preds) > 1:  # an unordered list of solutions
        return len(golds) == len(preds) and _matching(preds, golds)
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x == y
    if _BASE.search(a) or _BASE.search(b) or _TEXT.fullmatch(a) or _TEXT.fullmatch(b):
        return a.lower() == b.lower()
    return _math_verify(strip_math(pred), strip_math(gold))


def _matching(preds: list[str], golds: list[str]) -> bool:
    """Whether each prediction item equals a different gold item (lists are short)."""
    left = list(golds)
    for p in preds:
        hit = next((i for i, g in enumerate(left) if _one_equal(p, g)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def _math_verify(pred: str, gold: str) -> bool:
    """Symbolic equality by HF math-verify; False when either side cannot be parsed.

    math-verify times out through SIGALRM, which only the main thread may use;
    elsewhere it runs without its timeout.
    """
    import threading

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    parsed_gold = parse(f"${gold}$", extraction_config=config, parsing_timeout=timeout)
    parsed_pred = parse(f"${pred}$", extraction_config=config, parsing_timeout=timeout)
    return bool(parsed_gold and parsed_pred) and verify(parsed_gold, parsed_pred, timeout_seconds=timeout)


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
