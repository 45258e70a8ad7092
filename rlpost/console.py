"""What a person sees while a command runs: every long phase (model build, SFT, evaluation, start-up,
training) shows its progress, and results print as tables.

On a terminal the open phases are live bars, one per phase, that fit a 100-column window. When the output
is a file or a pipe (CI, nohup) a phase prints one plain line per interval instead, so the log reads top
to bottom. Either way a phase ends with one line saying what it did and how long it took. Everything here
writes to stdout; warnings and errors go to stderr through logging."""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

WIDTH = 120  # tables and lines when the output is not a terminal (a terminal's own width otherwise)
LINE_SECONDS = 30.0  # a phase without a step interval prints a line this often when not on a terminal

_shown = True  # log.progress=false hides the phases (tables and messages still print)
_live: Any = None  # the rich Progress that draws the open phases' bars (a terminal only)
_open = 0


def show_progress(on: bool) -> None:
    """Turn the phases' bars and lines on or off for this process (the recipe's log.progress)."""
    global _shown
    _shown = on


def is_terminal() -> bool:
    return _console().is_terminal


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else WIDTH, highlight=False)


def echo(text: str) -> None:
    """One message, printed above the bars when some are live."""
    if _live is not None:
        _live.console.print(text, markup=False, highlight=False, soft_wrap=True)
    else:
        print(text, flush=True)


def table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    """Results as a table: one column per label (e.g. "before", "after"), one row per scalar metric, in
    the order the results first name them; lists and nested results are left to the JSON files."""
    from rich.table import Table
    from rich.text import Text

    t = Table()  # the title goes on a line of its own: a table title wraps at the table's width
    t.add_column("metric")
    for label in rows:
        t.add_column(Text(label), justify="right")
    keys = list(dict.fromkeys(k for r in rows.values() for k, v in r.items() if not isinstance(v, (dict, list, str))))
    for key in keys:
        t.add_row(Text(key), *(Text(_cell(r.get(key))) for r in rows.values()))
    out = _live.console if _live is not None else _console()
    out.print(title, markup=False, soft_wrap=True)
    out.print(t)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def clock(seconds: float) -> str:
    """0:07, 2:05, 1:02:05"""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Phase:
    """One phase's progress: ``update(done, info)`` as units complete; see ``phase``."""

    def __init__(self, title: str, total: int | None, unit: str, every: int | None, done: int) -> None:
        self.title, self.total, self.unit, self.every = title, total, unit, every
        self.start = self.done = done
        self.info = ""
        self.t0 = self.t_line = time.monotonic()
        self.task = _live.add_task(escape(title), total=total, completed=done, count=self._count(), left="", info="") if _live is not None else None

    def update(self, done: int, info: str = "") -> None:
        self.done, self.info = done, info
        if self.task is not None:
            _live.update(self.task, completed=done, count=self._count(), left=self._left(), info=info)
        elif _shown and done < (self.total or math.inf) and self._due(done):
            print(self.line(), flush=True)
            self.t_line = time.monotonic()

    def _due(self, done: int) -> bool:
        if self.every is None:
            return time.monotonic() - self.t_line >= LINE_SECONDS
        return done % self.every == 0

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done} {self.unit}" if self.done else ""
        return f"{self.done}/{self.total} {self.unit}"

    def line(self, ended: str | None = None) -> str:
        """While it runs: ``train 50/150 steps (33%)  1:02, ~2:04 left  reward 0.52  len 3.6``; at its end
        (``ended``: "done" or "stopped"): ``train: 150/150 steps (100%) in 3:12  ...``."""
        elapsed = time.monotonic() - self.t0
        count = self._count() + (f" ({100 * self.done / self.total:.0f}%)" if self.total else "")
        if ended == "done":
            head = f"{self.title}: {count} in {clock(elapsed)}" if count else f"{self.title}: done in {clock(elapsed)}"
        elif ended == "stopped":
            head = f"{self.title}: stopped" + (f" at {count}" if count else "") + f" after {clock(elapsed)}"
        else:
            left = self._left()
            head = f"{self.title} {count}  {clock(elapsed)}" + (f", {left}" if left else "")
        return f"{head}  {self.info}" if self.info else head

    def _left(self) -> str:
        """``~2:04 left`` at the rate so far, once a unit is done."""
        elapsed = time.monotonic() - self.t0
        rate = (self.done - self.start) / elapsed if elapsed > 0 else 0.0
        return f"~{clock((self.total - self.done) / rate)} left" if self.total and rate > 0 else ""

    def close(self, failed: bool) -> None:
        if self.task is not None:
            _live.remove_task(self.task)
        if _shown:
            echo(self.line("stopped" if failed else "done"))


@contextmanager
def phase(title: str, total: int | None, unit: str = "", every: int | None = None, done: int = 0) -> Iterator[Phase]:
    """A long phase: on a terminal a live bar for as long as it runs; otherwise a line when it starts,
    then one every ``every`` units (None: every LINE_SECONDS at most); then, either way, one line with what
    it did in how long, also when it stops early. ``done``: units done before (a resumed run)."""
    global _live, _open
    if _shown and _live is None and is_terminal():
        _live = _progress()
        _live.start()
    _open += 1
    if _shown and _live is None:
        resumed = f" from {done}" if done else ""
        print(f"{title}: {total} {unit}{resumed} ..." if total else f"{title} ...", flush=True)
    p = Phase(title, total, unit, every, done)
    failed = True
    try:
        yield p
        failed = False
    finally:
        p.close(failed)
        _open -= 1
        if _open == 0 and _live is not None:
            _live.stop()
            _live = None


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _progress(console=None):
    """The bars: ``train ━━━━━━━━╸━━━━━━━━━━━ 50/150 steps ~1:15 left  reward 0.295  eval 0.444 ...``;
    a window too narrow for the metrics cuts them short, never the count."""
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.table import Column

    def text(template: str, **kw) -> TextColumn:
        return TextColumn(template, table_column=Column(no_wrap=True, **kw))

    return Progress(
        text("[bold]{task.description}"), BarColumn(bar_width=20), text("{task.fields[count]}"), text("{task.fields[left]}"),
        TextColumn("{task.fields[info]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        console=console or _console(), expand=True, redirect_stdout=True, redirect_stderr=True,
    )


def metric_info(metrics: dict[str, Any], keys: dict[str, str]) -> str:
    """``reward 0.52  acc 0.52``: the ``keys`` (metric -> short label) present in ``metrics`` as numbers."""
    return "  ".join(f"{label} {metrics[k]:.3g}" for k, label in keys.items() if isinstance(metrics.get(k), (int, float)))
