"""Terminal output for the CLI: colour and progress on a terminal, plain text when piped.

Colour is used only when the stream is a TTY, ``NO_COLOR`` is unset (https://no-color.org)
and ``TERM`` is not ``dumb``; ``FORCE_COLOR`` forces it (for tests and CI logs that render ANSI).
Progress lines ("running ...") are printed only on a terminal, so a piped ``bubu`` prints exactly
its result and nothing to parse around.
"""

from __future__ import annotations

import os
import sys
from typing import Final, TextIO

__all__ = ["Term"]

_CODES: Final = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "cyan": "36",
}


class Term:
    """Styled writing to one stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _isatty(self.stream)
        if os.environ.get("FORCE_COLOR"):
            self.colour = True
        else:
            self.colour = (
                self.interactive
                and "NO_COLOR" not in os.environ
                and os.environ.get("TERM", "") != "dumb"
            )

    def style(self, text: str, *styles: str) -> str:
        """Return ``text`` wrapped in ANSI codes when colour is on, else unchanged."""
        if not self.colour or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        """Write one line."""
        print(text, file=self.stream, flush=True)

    def progress(self, text: str) -> None:
        """Write a progress line, only on a terminal."""
        if self.interactive:
            self.line(self.style(text, "dim"))

    def ok(self, text: str) -> None:
        """Write a success line (a green check on a terminal)."""
        mark = self.style("✓", "green") if self.colour else "ok:"
        self.line(f"{mark} {text}")

    def bad(self, text: str) -> None:
        """Write a failure line (a red cross on a terminal)."""
        mark = self.style("✗", "red") if self.colour else "error:"
        self.line(f"{mark} {text}")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
