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


class ResumePoint:
    """Context manager: once ``command`` is set, a Ctrl-C anywhere inside it
    (loading, generating, scoring, closing a server, writing results) leaves as
    :class:`Interrupted` naming that command; before, it stays a plain
    KeyboardInterrupt (nothing on disk to continue)."""

    def __init__(self, command: str | None = None) -> None:
        self.command = command

    def __enter__(self) -> ResumePoint:
        return self

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if (self.command is not None and isinstance(exc, KeyboardInterrupt)
                and not isinstance(exc, Interrupted)):
            raise Interrupted(self.command) from exc


def key_values(items: Iterable[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` option values (``-T``, ``-M``, ``-J``) as a dict, the key
    stripped, a later key winning.  Raises ``UserError`` for an item without
    ``=`` or without a key."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got '{item}'")
        out[key.strip()] = value
    return out


def unknown_name(kind: str, name: str, known: Iterable[str]) -> UserError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return UserError(f"unknown {kind} '{name}'{hint}")
