"""Plugin discovery through Python entry points.

Built-in tasks, backends, sandboxes and CLI commands are declared in
evalsuite's own pyproject.toml under the same groups a third-party package
uses, so there is exactly one registration path.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from evalsuite.errors import UserError, unknown_name

GROUPS = {
    "task": "evalsuite.tasks",
    "backend": "evalsuite.backends",
    "sandbox": "evalsuite.sandboxes",
    "command": "evalsuite.commands",
}


@cache
def _entry_points(kind: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUPS[kind]):
        if ep.name in found and found[ep.name].value != ep.value:
            raise UserError(
                f"two plugins register {kind} '{ep.name}': {found[ep.name].value} and {ep.value}"
            )
        found[ep.name] = ep
    return found


def names(kind: str) -> list[str]:
    return sorted(_entry_points(kind))


def load(kind: str, name: str) -> Any:
    eps = _entry_points(kind)
    if name not in eps:
        raise unknown_name(kind, name, eps)
    try:
        return eps[name].load()
    except ImportError as exc:
        raise UserError(f"{kind} plugin '{name}' ({eps[name].value}) failed to import: {exc}") from None
