"""Host-side decoding of ``result_var`` values sent by the trampoline.

The in-container encoder (``executor.encode_value``) accepts only exact plain
builtins and tags every node (a container of one scalar kind as a whole), so
tuples, lists, sets and frozensets stay distinct and floats round-trip
bit-exactly via ``float.hex``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MAX_DEPTH = 210
MAX_SAME_HASH = 32
_EXACT = {"s": frozenset((str,)), "b": frozenset((bool,))}


class BadValue(ValueError):
    pass


def decode(node: Any, _depth: int = 0) -> Any:
    if _depth > MAX_DEPTH:
        raise BadValue("result value nested too deeply")
    if not isinstance(node, list) or not node or not isinstance(node[0], str):
        raise BadValue(f"malformed value node {node!r:.80}")
    tag = node[0]
    try:
        if tag == "n":
            return None
        if tag == "b":
            if type(node[1]) is not bool:
                raise BadValue("malformed bool")
            return node[1]
        if tag == "i":
            return int(node[1], 16)
        if tag == "f":
            return float.fromhex(node[1])
        if tag == "s":
            if type(node[1]) is not str:
                raise BadValue("malformed str")
            return node[1]
        if tag in ("l", "t", "S", "F"):
            if len(node) == 3:  # items all of one scalar kind: [tag, payloads, kind]
                items = _scalars(node[1], node[2])
            else:
                items = [decode(v, _depth + 1) for v in node[1]]
            if tag in ("S", "F"):
                _check_hashes(items)
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d":
            pairs = [(decode(k, _depth + 1), decode(v, _depth + 1)) for k, v in node[1]]
            _check_hashes([k for k, _ in pairs])
            return dict(pairs)
    except (TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"malformed value node: {exc}") from exc
    raise BadValue(f"unknown value tag {tag!r:.20}")


def _check_hashes(keys: list[Any]) -> None:
    """Refuse set or dict keys of which many share one hash value.

    Building a set or dict costs time quadratic in such a group (ints that
    differ by multiples of 2**61 - 1 all hash alike), so a forged report could
    stall the host; values a program really returned never look like this."""
    if len(keys) > MAX_SAME_HASH and max(Counter(map(hash, keys)).values()) > MAX_SAME_HASH:
        raise BadValue(f"more than {MAX_SAME_HASH} set or dict keys share one hash value")


def _scalars(payloads: Any, kind: Any) -> list[Any]:
    """The items of a compact container: payloads as the scalar tags carry them."""
    if type(payloads) is not list:
        raise BadValue("malformed compact container")
    if kind == "i":
        return [int(v, 16) for v in payloads]  # TypeError for a non-str payload
    if kind == "f":
        return [float.fromhex(v) for v in payloads]
    if kind in ("s", "b") and _EXACT[kind].issuperset(map(type, payloads)):
        return payloads
    raise BadValue(f"malformed compact container of kind {kind!r:.20}")
