"""Host-side decoding of ``result_var`` values sent by the trampoline.

The in-container encoder (``executor.encode_value``) accepts only exact plain
builtins and tags every node, so tuples, lists, sets and frozensets stay
distinct and floats round-trip bit-exactly via ``float.hex``.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 210


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
            items = [decode(v, _depth + 1) for v in node[1]]
            return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
        if tag == "d":
            return {decode(k, _depth + 1): decode(v, _depth + 1) for k, v in node[1]}
    except (TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"malformed value node: {exc}") from exc
    raise BadValue(f"unknown value tag {tag!r:.20}")
