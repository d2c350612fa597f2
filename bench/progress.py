"""Progress of a benchmark run on stderr (stdout keeps the table): rich on a terminal,
one plain line per step otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Progress:
    """``note(text)`` for a step; ``bar(what, total)`` for a counted one."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._console = None
        if self.tty:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        stamp = f"[{time.monotonic() - self.t0:6.1f} s]"
        if self._console is not None:
            self._console.print(f"[dim]{stamp}[/dim] {text}", markup=True)
        else:
            print(f"{stamp} {text}", file=sys.stderr, flush=True)

    @contextmanager
    def bar(self, what: str, total: int) -> Iterator[Callable[[int], None]]:
        """Yields ``update(done)``; a rich bar on a terminal, else a line every 10 %."""
        if self.quiet:
            yield lambda done: None
            return
        if self._console is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            with RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            ) as rp:
                task = rp.add_task(what, total=total)
                yield lambda done: rp.update(task, completed=done)
            self.note(f"{what}: done")
            return
        step = max(1, total // 10)
        shown = [0]

        def update(done: int) -> None:
            if done >= shown[0] + step or (done == total and shown[0] != total):
                shown[0] = done
                self.note(f"{what}: {done}/{total}")

        yield update
