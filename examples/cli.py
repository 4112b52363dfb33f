"""What every example's command line shares: --help with defaults, one-line errors, progress fit for logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_LINES = 20  # a progress bar in a log file prints about this many lines a run
# Errors a user causes and can fix (a missing file, an offline Hub, a bad value): one line, no traceback.
# huggingface_hub's errors derive from OSError (HTTP, offline) or ValueError (bad repo ids), as ours do.
EXPECTED_ERRORS = (OSError, ValueError)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every flag's default after its help (unless the help says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # A help that says its default itself ("default: cuda if available", a resumed checkpoint's value)
        # would otherwise end in "(default: None)".
        return action.help if "default" in (action.help or "") else super()._get_help_string(action)


def argument_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser whose --help shows ``description`` (the script's docstring) as written and every default."""
    return argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)


def run_main(main: Callable[[], Any]) -> None:
    """Call ``main()``; an expected error ends the process with one line on stderr and exit status 2."""
    try:
        main()
    except EXPECTED_ERRORS as err:
        name = sys.argv[0].rsplit("/", 1)[-1]
        message = " ".join(str(err).split()) or type(err).__name__  # one line, whatever the error's layout
        print(f"{name}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


class _LogProgress(tqdm):
    """tqdm for a log file: a full line every ``every`` steps and at the end, never a carriage return."""

    def __init__(self, *args: Any, every: int, **kwargs: Any) -> None:
        self.every, self.shown = every, -1
        super().__init__(*args, mininterval=0, maxinterval=float("inf"), ascii=True, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        at_end = self.total is not None and self.n >= self.total
        if self.n == self.shown or (self.n % self.every and not at_end) or msg == "":
            return True
        self.shown = self.n
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()
        return True


def progress(iterable: Iterable[T], *, total: int, initial: int = 0, **kwargs: Any) -> tqdm:
    """A progress bar over ``iterable``: tqdm's on a terminal; in a log (stderr not a TTY), one line per about
    1/``LOG_LINES`` of ``total`` instead of a line rewritten forever. ``kwargs`` go to tqdm (``desc``, ``disable``)."""
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, initial=initial, **kwargs)
    every = max(1, (total - initial) // LOG_LINES)
    return _LogProgress(iterable, total=total, initial=initial, every=every, **kwargs)
