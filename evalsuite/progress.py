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

A task's later phase (its judging: :meth:`RunProgress.start_phase`) gets a
line or bar of its own, in its own unit, with its own error kinds.  Its total
grows as work is handed to it; a ``+`` says more may come (the task is still
generating).  Where one unit takes several steps (a two-turn judge
conversation gives two replies) the steps are shown, and they move the ETA::

    tinystories judging: 3/20+ judgments (15%) · 23/40 replies · elapsed 1:02 · ETA 0:46 · 41.0 tok/s · 1 parse error · 0 judge failures

Only one entry works at a time: the others' clocks and token counts stand
still meanwhile (a judge sharing the evaluated model's backend does not
inflate its generation rate), and an entry whose known work is done stops
its clock and is not printed again.  While a task's last entry is done but
the task is not (scoring its last batch), the heartbeat says so instead::

    humaneval: scoring … 0:40

:func:`status` is the same for one-off waits (loading a model, starting a
server): a spinner on a terminal; otherwise a line once it has lasted a
second, every ``PLAIN_INTERVAL_S`` seconds while it lasts and at the end.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TaskID, TextColumn
from rich.table import Column as TableColumn
from rich.text import Text

# Seconds between plain lines: at most (heartbeat) and at least (throttle).
PLAIN_INTERVAL_S = float(os.environ.get("EVALSUITE_PROGRESS_INTERVAL", "10"))
PLAIN_STEP = 0.05  # a plain line at every 5 % of a task as well
STATUS_GRACE_S = 1.0  # a plain status() line waits this long: a quick step (or error) shows only its outcome


# A backend's running (prompt tokens, completion tokens), as Backend.live_tokens returns them.
LiveTokens = Callable[[], tuple[int, int]]


def stderr_console() -> Console:
    return Console(stderr=True)


def _say(console: Console, line: str) -> None:
    """Print ``line`` as it is: no rich markup or emoji codes (``mock:x[/]``, ``hf:ok`` are model names)."""
    console.print(Text(line), soft_wrap=True)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


_SHORT_KIND = re.compile(r"\b(error|failure)$")  # a kind's last word, shortened in a bar: error -> err, failure -> fail


def _short_word(match: re.Match[str]) -> str:
    return {"error": "err", "failure": "fail"}[match[1]]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


@dataclass
class TaskCounts:
    """What is known about one progress entry: a task's samples, or a later phase of it (its judgments).

    Clocks and rates cover the time this entry worked in this session: the
    clock stands still while the entry is paused (another entry works, or its
    known work is done).
    """

    total: int
    done: int
    started_done: int  # done without work in this session (resumed, or answered from a log)
    unit: str = ""  # what is counted, after the count ("judgments"); "" for a task's samples
    error_kinds: tuple[str, ...] = ("error",)  # failure kinds, counted apart ("parse error", "judge failure")
    step_unit: str = ""  # a finer count within a unit ("replies"); shown when a unit takes several
    parent: TaskCounts | None = None  # the entry that hands this one its work: while it runs, more may come
    t0: float = field(default_factory=time.monotonic)
    tokens: int = 0  # completion tokens of finished samples (or steps)
    errors: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    steps_total: int = 0
    live: LiveTokens | None = None  # the backend's running (prompt, completion) token counts
    live_start: tuple[int, int] = (0, 0)
    paused_at: float | None = None
    live_paused: tuple[int, int] = (0, 0)  # live() when paused
    interrupted: bool = False  # the run stopped (Ctrl-C) before this entry's work was done

    def __post_init__(self) -> None:
        if self.live is not None:
            self.live_start = self.live()

    @property
    def open(self) -> bool:
        """Whether more work may still be handed to this entry (its parent is not done)."""
        return self.parent is not None and not self.parent.complete

    @property
    def complete(self) -> bool:
        """Whether all work known now is done."""
        return self.done >= self.total

    @property
    def elapsed(self) -> float:
        """Seconds this entry worked in this session."""
        return (self.paused_at if self.paused_at is not None else time.monotonic()) - self.t0

    @property
    def eta(self) -> float | None:
        """Seconds until the known work is done, at this session's pace (steps where counted); None: no pace yet."""
        if self.steps_total:
            fresh, left = self.steps, self.steps_total - self.steps
        else:
            fresh, left = self.done - self.started_done, self.total - self.done
        if fresh <= 0:
            return None
        return self.elapsed / fresh * max(0, left)

    @property
    def fraction(self) -> float:
        """Share of the known work done in [0, 1]; steps, where counted, move it within a unit."""
        if not self.total:
            return 1.0
        if not self.steps_total or self.complete or self.interrupted:  # steps settled on the way out say nothing
            return min(1.0, self.done / self.total)
        fresh = self.total - self.started_done
        return (self.started_done + fresh * min(1.0, self.steps / self.steps_total)) / self.total

    def pause(self) -> None:
        """Stop the clock and the live token counts (another entry works, or this one has nothing to do)."""
        if self.paused_at is None:
            self.paused_at = time.monotonic()
            if self.live is not None:
                self.live_paused = self.live()

    def resume(self) -> None:
        """Restart the clock; time and live tokens spent while paused belong to someone else."""
        if self.paused_at is None:
            return
        self.t0 += time.monotonic() - self.paused_at
        self.paused_at = None
        if self.live is not None:
            now = self.live()
            self.live_start = tuple(s + n - p for s, n, p in zip(self.live_start, now, self.live_paused))  # type: ignore[assignment]

    def live_tokens(self) -> tuple[int, int] | None:
        """(prompt, completion) tokens the backend processed while this entry worked; None: not counted live."""
        if self.live is None:
            return None
        prompt, completion = self.live() if self.paused_at is None else self.live_paused
        return prompt - self.live_start[0], completion - self.live_start[1]

    def rates(self) -> str:
        """Completion tokens per second of this session (``85.3 tok/s``), plus ``· prefill 571 tok/s``
        where the backend counts tokens live."""
        elapsed = self.elapsed
        live = self.live_tokens()
        if live is None or elapsed <= 0:
            return f"{self.tokens / elapsed if elapsed > 0 else 0.0:.1f} tok/s"
        return f"{live[1] / elapsed:.1f} tok/s · prefill {live[0] / elapsed:.0f} tok/s"

    def amount(self) -> str:
        """``12/32`` (``12/32+`` while more may come) and the unit."""
        return f"{self.done}/{self.total}{'+' if self.open else ''}" + (f" {self.unit}" if self.unit else "")

    def steps_text(self) -> str:
        """``23/40 replies`` where some unit takes several steps (or a step was retried), else ``""``."""
        # Once the known units are done, no announced step is still to come (a failed unit's never will).
        steps_total = self.steps if self.complete else self.steps_total
        if not self.step_unit or steps_total <= self.total - self.started_done:
            return ""
        return f"{self.steps}/{steps_total} {self.step_unit}"

    def count(self) -> str:
        """The amount, and the steps where they say more."""
        return " · ".join(filter(None, (self.amount(), self.steps_text())))

    def error_text(self, short: bool = False) -> str:
        """``0 errors``, or one count per kind (``1 parse error · 0 judge failures``); ``short``, for a bar:
        ``0 err``, ``1 parse err · 0 judge fail``."""
        if short:
            return " · ".join(f"{self.errors[kind]} {_SHORT_KIND.sub(_short_word, kind)}" for kind in self.error_kinds)
        return " · ".join(_plural(self.errors[kind], kind) for kind in self.error_kinds)

    def eta_text(self) -> str:
        """``ETA 1:07``, ``ETA ?`` before there is a pace, ``done``, or ``interrupted``."""
        if self.complete and not self.open:
            return "done"
        return "interrupted" if self.interrupted else f"ETA {_clock(self.eta)}"

    def line(self, name: str) -> str:
        """The plain line of this entry, called ``name``."""
        pct = f"{100 * self.done / self.total:.0f}%" if self.total else "100%"
        steps = self.steps_text()
        return (f"{name}: {self.amount()} ({pct}){f' · {steps}' if steps else ''} · elapsed {_clock(self.elapsed)} · "
                f"{self.eta_text()} · {self.rates()} · {self.error_text()}")


def _counts_column(render: Callable[[TaskCounts], str], style: str | Callable[[TaskCounts], str]) -> type[ProgressColumn]:
    """A rich column that shows ``render(counts)`` of each row's :class:`TaskCounts`."""

    class Column(ProgressColumn):
        def __init__(self) -> None:
            # One line per entry however narrow the terminal: a cell is cut short (…), never wrapped.
            super().__init__(table_column=TableColumn(no_wrap=True, overflow="ellipsis"))

        def render(self, task: Any) -> Text:
            counts: TaskCounts = task.fields["counts"]
            return Text(render(counts), style=style(counts) if callable(style) else style)

    return Column


_Count = _counts_column(TaskCounts.count, "progress.download")
_Elapsed = _counts_column(lambda c: _clock(c.elapsed), "progress.elapsed")
_Eta = _counts_column(TaskCounts.eta_text, "progress.remaining")
_TokensPerSecond = _counts_column(TaskCounts.rates, "progress.data.speed")
_Errors = _counts_column(lambda c: c.error_text(short=True), lambda c: "red" if sum(c.errors.values()) else "dim")


class RunProgress:
    """Per-task progress of a run: ``start_task``, ``advance`` per sample, ``finish_task``.

    A later phase of a task (its judging) is an entry of its own:
    ``start_phase`` once, then ``add_work`` as work is handed to it,
    ``add_steps``/``step`` where a unit takes several steps, ``advance`` per
    finished unit.  A live bar when ``console`` is a terminal, plain lines
    otherwise (see the module docstring).  Thread-safe; use as a context manager.
    """

    def __init__(self, console: Console | None = None, interval_s: float = PLAIN_INTERVAL_S) -> None:
        self.console = console or stderr_console()
        self.live = self.console.is_terminal
        self.interval_s = interval_s
        self.counts: dict[str, TaskCounts] = {}
        self._lock = threading.Lock()
        self._last_line = 0.0
        self._last_step: dict[str, int] = {}
        self._printed: dict[str, tuple[int, int, int]] = {}  # each entry's _state at its last plain line
        self._phases: dict[str, list[str]] = {}  # task -> its later phases' entries
        self._task_of: dict[str, str] = {}  # entry -> its task
        self._current: str | None = None  # the entry working now
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.progress: Progress | None = None
        self.ids: dict[str, TaskID] = {}
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                _Count(),
                _Elapsed(),
                _Eta(),
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

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, KeyboardInterrupt):
            # The last frame stays on the terminal: it must not promise an ETA
            # (work settled on the way out, like a judge's pending replies, reads as 0:00).
            with self._lock:
                for name, counts in self.counts.items():
                    counts.interrupted = True
                    counts.pause()
                    self._sync(name)
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.progress is not None:
            self.progress.stop()

    def start_task(self, name: str, total: int, completed: int, live: LiveTokens | None = None) -> None:
        """Show task ``name`` with ``completed`` of ``total`` samples done; ``live`` counts tokens as they go."""
        with self._lock:
            self._add(name, name, TaskCounts(total=total, done=completed, started_done=completed, live=live))
            self._phases[name] = []
            self._changed(name, show=True)

    def start_phase(
        self, task: str, phase: str, unit: str, error_kinds: tuple[str, ...], step_unit: str = "",
        live: LiveTokens | None = None,
    ) -> str:
        """Add the entry ``"{task} {phase}"`` (e.g. ``mtbench judging``), counting ``unit`` with ``error_kinds``;
        empty until ``add_work``.  Returns its name, for the calls below."""
        name = f"{task} {phase}"
        with self._lock:
            counts = TaskCounts(total=0, done=0, started_done=0, unit=unit, error_kinds=error_kinds,
                                step_unit=step_unit, parent=self.counts[task], live=live)
            counts.pause()  # nothing to do yet
            self._add(name, task, counts)
            self._phases[task].append(name)
        return name

    def add_work(self, name: str, n: int, done: int = 0) -> None:
        """``n`` more units for entry ``name``, ``done`` of them done already (answered without work)."""
        with self._lock:
            counts = self.counts[name]
            counts.total += n
            counts.done += done
            counts.started_done += done
            self._changed(name, show=True)

    def add_steps(self, name: str, n: int) -> None:
        """``n`` more steps are coming for ``name``'s units (negative: fewer than announced)."""
        with self._lock:
            self.counts[name].steps_total += n
            self._changed(name)

    def step(self, name: str, tokens: int = 0) -> None:
        """One step of a unit of ``name`` is done, with ``tokens`` completion tokens."""
        with self._lock:
            counts = self.counts[name]
            counts.steps += 1
            counts.tokens += tokens
            self._changed(name)

    def advance(self, name: str, tokens: int = 0, error: bool | str = False, reused: bool = False) -> None:
        """One more unit of ``name`` is done; ``error``: it failed (``True``: the entry's first error kind);
        ``reused``: done without work in this session (a stored output read back), so it does not set the pace."""
        with self._lock:
            counts = self.counts[name]
            counts.done += 1
            counts.started_done += reused
            counts.tokens += tokens
            if error:
                counts.errors[counts.error_kinds[0] if error is True else error] += 1
            self._changed(name)

    def add_errors(self, name: str, n: int) -> None:
        """Count ``n`` samples of ``name`` that were done but not scored (e.g. sandbox errors)."""
        with self._lock:
            counts = self.counts[name]
            counts.errors[counts.error_kinds[0]] += n
            self._sync(name)

    def finish_task(self, name: str) -> None:
        """Task ``name`` and its phases are over: their clocks stop, their last state is shown."""
        with self._lock:
            for entry in (name, *self._phases.get(name, ())):
                self.counts[entry].pause()
                if self.progress is None and self._printed.get(entry) != self._state(entry):
                    self._print(entry)
            if self.progress is not None:
                self.progress.refresh()
            if self._task_of.get(self._current or "") == name:
                self._current = None

    def _add(self, name: str, task: str, counts: TaskCounts) -> None:
        self.counts[name] = counts
        self._task_of[name] = task
        if self.progress is not None:
            self.ids[name] = self.progress.add_task(name, total=max(1, counts.total), completed=0, counts=counts)

    def _changed(self, name: str, show: bool = False) -> None:
        """Entry ``name`` moved (the lock is held): it is the one working now; once its known work is
        done, the entry that hands it work (if still working) is.  A plain line when ``show``, at each
        ``PLAIN_STEP`` of its units, or after ``interval_s`` without one."""
        counts = self.counts[name]
        if name != self._current:
            if self._current is not None:
                self.counts[self._current].pause()
            self._current = name
        if not counts.complete:
            counts.resume()
        else:
            counts.pause()
            task = self._task_of[name]
            if counts.open:  # the work goes back to the entry that hands it out (generation)
                self._current = task
                self.counts[task].resume()
        self._sync(name)
        if self.progress is None:
            step = self._unit_step(counts)
            if show or step > self._last_step.get(name, 0) or time.monotonic() - self._last_line >= self.interval_s:
                self._print(name)

    def _sync(self, name: str) -> None:
        """Move ``name``'s bar to its counts (the lock is held); the columns read the counts themselves."""
        if self.progress is not None:
            counts = self.counts[name]
            total = max(1, counts.total)
            self.progress.update(self.ids[name], total=total, completed=counts.fraction * total)

    @staticmethod
    def _unit_step(counts: TaskCounts) -> int:
        # Units, not steps: a line per reply would repeat the judgment count just before it moves.
        return int(counts.done / counts.total / PLAIN_STEP) if counts.total else 0

    def _state(self, name: str) -> tuple[int, int, int]:
        # Not the errors: samples that fail scoring after their task's last line are the judging line's
        # (or the summary's) to report, not a reason to print generation again.
        counts = self.counts[name]
        return counts.done, counts.total, counts.steps

    def _print(self, name: str) -> None:
        """Write the plain line of ``name`` (the lock is held)."""
        counts = self.counts[name]
        self._last_line = time.monotonic()
        self._printed[name] = self._state(name)
        self._last_step[name] = self._unit_step(counts)
        _say(self.console, counts.line(name))

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval_s)):
            with self._lock:
                name = self._current
                if name is None or time.monotonic() - self._last_line < self.interval_s:
                    continue
                counts = self.counts[name]
                if not counts.complete:
                    self._print(name)
                else:  # its work is done, its task's is not: scoring its last batch
                    self._last_line = time.monotonic()
                    waited = _clock(self._last_line - (counts.paused_at or self._last_line))
                    _say(self.console, f"{self._task_of[name]}: scoring … {waited}")


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
        spinner = outer or console.status(Text(message))
        if outer is None:
            spinner.start()
        _spinners.append(spinner)

        def show() -> None:
            spinner.update(Text(f"{message} ({_clock(time.monotonic() - t0)})"))

        show()
    else:
        def show() -> None:
            elapsed = time.monotonic() - t0
            _say(console, f"{message} …" + (f" {_clock(elapsed)}" if shown else ""))
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
            _say(console, f"{'✓' if ok else '✗'} {message} ({took})")
        elif ok or shown:
            _say(console, f"{message}: {'done in' if ok else 'failed after'} {took}")
