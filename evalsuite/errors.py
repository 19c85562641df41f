"""User-facing errors: the CLI prints these as one line, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix (bad name, missing data, malformed input)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C once a run directory holds work: ``resume`` is the command that continues it."""

    def __init__(self, resume: str) -> None:
        super().__init__(resume)
        self.resume = resume


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return UserError(f"unknown {kind} '{name}'{hint}")
