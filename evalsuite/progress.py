"""Progress that every user sees: a live bar on a terminal, plain lines anywhere else.

On a terminal each task gets a rich bar (done/total, elapsed, ETA, tokens/s,
errors).  When stderr is not a terminal (CI, ``nohup``, a pipe) a bar would
print nothing until the end, so :class:`RunProgress` writes a plain line
instead at each 5 % of a task, and a heartbeat thread writes one whenever
``PLAIN_INTERVAL_S`` seconds (10; ``EVALSUITE_PROGRESS_INTERVAL``) passed
without one, so a CI log shows life even while no sample finishes::

    bbh: 12/27 (44%) · elapsed 0:41 · ETA 0:52 · 85.3 tok/s · 0 errors

Tokens/s counts completion tokens.  A backend that counts them as it goes
(``Backend.live_tokens``: local models) moves it before the first sample
finishes and adds the prompt tokens it prefills, so a long prefill shows too::

    bbh: 0/27 (0%) · elapsed 0:20 · ETA ? · 0.0 tok/s · prefill 571 tok/s · 0 errors

:func:`status` is the same for one-off waits (loading a model, starting a
server): a spinner on a terminal; otherwise a line once it has lasted a
second, every ``PLAIN_INTERVAL_S`` seconds while it lasts and at the end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

# Seconds between plain lines: at most (heartbeat) and at least (throttle).
PLAIN_INTERVAL_S = float(os.environ.get("EVALSUITE_PROGRESS_INTERVAL", "10"))
PLAIN_STEP = 0.05  # a plain line at every 5 % of a task as well
STATUS_GRACE_S = 1.0  # a plain status() line waits this long: a quick step (or error) shows only its outcome


# A backend's running (prompt tokens, completion tokens), as Backend.live_tokens returns them.
LiveTokens = Callable[[], tuple[int, int]]


def stderr_console() -> Console:
    return Console(stderr=True)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class TaskCounts:
    """What is known about one task's progress; rates cover this session only."""

    total: int
    done: int
    started_done: int  # already done when the task started (resume)
    t0: float = field(default_factory=time.monotonic)
    tokens: int = 0  # completion tokens of finished samples
    errors: int = 0
    live: LiveTokens | None = None  # the backend's running (prompt, completion) token counts
    live_start: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.live is not None:
            self.live_start = self.live()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    @property
    def eta(self) -> float | None:
        fresh = self.done - self.started_done
        if fresh <= 0:
            return None
        return self.elapsed / fresh * (self.total - self.done)

    def rates(self) -> str:
        """Completion tokens per second of this session (``85.3 tok/s``), plus ``· prefill 571 tok/s``
        where the backend counts tokens live."""
        elapsed = self.elapsed
        if self.live is None or elapsed <= 0:
            return f"{self.tokens / elapsed if elapsed > 0 else 0.0:.1f} tok/s"
        prompt, completion = self.live()
        return (f"{(completion - self.live_start[1]) / elapsed:.1f} tok/s"
                f" · prefill {(prompt - self.live_start[0]) / elapsed:.0f} tok/s")

    def line(self, name: str) -> str:
        pct = f"{100 * self.done / self.total:.0f}%" if self.total else "100%"
        eta = "done" if self.done >= self.total else f"ETA {_clock(self.eta)}"
        errors = f"{self.errors} error{'s' if self.errors != 1 else ''}"
        return (f"{name}: {self.done}/{self.total} ({pct}) · elapsed {_clock(self.elapsed)} · {eta} · "
                f"{self.rates()} · {errors}")


class _TokensPerSecond(ProgressColumn):
    def render(self, task: Any) -> Text:
        counts: TaskCounts | None = task.fields.get("counts")
        return Text(counts.rates() if counts else "   0.0 tok/s", style="progress.data.speed")


class _Errors(ProgressColumn):
    def render(self, task: Any) -> Text:
        counts: TaskCounts | None = task.fields.get("counts")
        n = counts.errors if counts else 0
        return Text(f"{n} err", style="red" if n else "dim")


class RunProgress:
    """Per-task progress of a run: ``start_task``, ``advance`` per sample, ``finish_task``.

    A live bar when ``console`` is a terminal, plain lines otherwise (see the
    module docstring).  Thread-safe; use as a context manager.
    """

    def __init__(self, console: Console | None = None, interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.console = console or stderr_console()
        self.live = self.console.is_terminal
        self.interval_s = interval_s
        self.counts: dict[str, TaskCounts] = {}
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._last_step: dict[str, int] = {}
        self._printed: dict[str, int] = {}  # done count of each task's last plain line
        self._current: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.progress: Progress | None = None
        self.ids: dict[str, TaskID] = {}
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                _TokensPerSecond(),
                _Errors(),
                console=self.console,
                transient=False,
            )

    def __enter__(self) -> "RunProgress":
        if self.progress is not None:
            self.progress.start()
        else:
            self._heartbeat = threading.Thread(target=self._beat, name="evalsuite-progress", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.progress is not None:
            self.progress.stop()

    def start_task(self, name: str, total: int, completed: int, live: LiveTokens | None = None) -> None:
        """Show task ``name`` with ``completed`` of ``total`` samples done; ``live`` counts tokens as they go."""
        with self._lock:
            self.counts[name] = TaskCounts(total=total, done=completed, started_done=completed, live=live)
            self._current = name
            if self.progress is not None:
                self.ids[name] = self.progress.add_task(name, total=total, completed=completed, counts=self.counts[name])
            else:
                self._print(name)

    def advance(self, name: str, tokens: int = 0, error: bool = False) -> None:
        """One more sample of ``name`` is done (``error``: it failed)."""
        with self._lock:
            counts = self.counts[name]
            counts.done += 1
            counts.tokens += tokens
            counts.errors += int(error)
            if self.progress is not None:
                self.progress.update(self.ids[name], advance=1)
                return
            step = int(counts.done / counts.total / PLAIN_STEP) if counts.total else 0
            if step > self._last_step.get(name, 0) or time.monotonic() - self._last_line >= self.interval_s:
                self._print(name)

    def add_errors(self, name: str, n: int) -> None:
        """Count ``n`` samples of ``name`` that were done but not scored (e.g. sandbox errors)."""
        with self._lock:
            self.counts[name].errors += n

    def finish_task(self, name: str) -> None:
        with self._lock:
            if self.progress is not None:
                self.progress.refresh()
            elif self._printed.get(name) != self.counts[name].done:
                self._print(name)
            self._current = None

    def _print(self, name: str) -> None:
        """Write the plain line of ``name`` (the lock is held)."""
        counts = self.counts[name]
        self._last_line = time.monotonic()
        self._printed[name] = counts.done
        self._last_step[name] = int(counts.done / counts.total / PLAIN_STEP) if counts.total else 0
        self.console.print(counts.line(name), highlight=False, soft_wrap=True)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval_s)):
            with self._lock:
                if self._current is not None and time.monotonic() - self._last_line >= self.interval_s:
                    self._print(self._current)


_spinners: list[Any] = []  # live terminal spinners, innermost last (rich shows one at a time)


@contextmanager
def status(message: str, console: Console | None = None, interval_s: float = PLAIN_INTERVAL_S) -> Iterator[None]:
    """Show that something slow is under way: ``with status("starting vLLM server"): ...``.

    On a terminal a spinner with the elapsed time, replaced by
    "✓ MESSAGE (3.2 s)" (a nested call retitles the spinner already shown);
    elsewhere a line "MESSAGE …" once it has lasted ``STATUS_GRACE_S``,
    "MESSAGE … 0:20" every ``interval_s`` seconds while it lasts and
    "MESSAGE: done in 3.2 s" at the end.  On an exception it reports "failed
    after …" (plain: only if its first line was shown, so that a user error
    raised at once stays the one line that is printed) and re-raises.
    """
    console = console or stderr_console()
    t0 = time.monotonic()
    stop = threading.Event()
    spinner = None
    if console.is_terminal:
        outer = _spinners[-1] if _spinners else None
        spinner = outer or console.status(message)
        if outer is None:
            spinner.start()
        _spinners.append(spinner)

        def show() -> None:
            spinner.update(f"{message} ({_clock(time.monotonic() - t0)})")

        show()
    else:
        def show() -> None:
            elapsed = time.monotonic() - t0
            console.print(f"{message} …" + (f" {_clock(elapsed)}" if shown else ""), highlight=False, soft_wrap=True)
            shown.append(elapsed)

    shown: list[float] = []

    def tick() -> None:
        if spinner is None and not stop.wait(min(STATUS_GRACE_S, interval_s)):
            show()
        while not stop.wait(1.0 if spinner is not None else interval_s):
            show()

    beat = threading.Thread(target=tick, name="evalsuite-status", daemon=True)
    beat.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        beat.join()
        took = f"{time.monotonic() - t0:.1f} s"
        if spinner is not None:
            _spinners.pop()
            if not _spinners:
                spinner.stop()
            console.print(f"{'✓' if ok else '✗'} {message} ({took})", highlight=False, soft_wrap=True)
        elif ok or shown:
            console.print(f"{message}: {'done in' if ok else 'failed after'} {took}", highlight=False, soft_wrap=True)
