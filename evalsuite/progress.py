"""Progress display: a bar per task with ETA and generation throughput."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class _TokensPerSecond(ProgressColumn):
    def render(self, task: Any) -> Text:
        tokens = task.fields.get("tokens", 0)
        elapsed = time.monotonic() - task.fields.get("t0", time.monotonic())
        rate = tokens / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:6.1f} tok/s", style="progress.data.speed")


class RunProgress:
    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            _TokensPerSecond(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.ids: dict[str, TaskID] = {}
        self.tokens: dict[str, int] = {}

    def __enter__(self) -> "RunProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start_task(self, name: str, total: int, completed: int) -> None:
        self.ids[name] = self.progress.add_task(name, total=total, completed=completed, tokens=0, t0=time.monotonic())

    def advance(self, name: str, tokens: int = 0) -> None:
        self.tokens[name] = self.tokens.get(name, 0) + tokens
        self.progress.update(self.ids[name], advance=1, tokens=self.tokens[name])

    def finish_task(self, name: str) -> None:
        self.progress.refresh()
