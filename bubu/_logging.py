"""JSON logs on stdout, with known secret values masked (go-sdk-core.md (a) Logging row).

The Go SDK's default logger is slog JSON on stdout at level Debug when ``BUBU_DEBUG`` is truthy,
else Info. ``install()`` does the same for the process that runs an entry point: it attaches one
JSON handler to the root logger **only when the root logger has none** (an application or
pytest that configured logging keeps its own), and removes it again when the run ends.

Secret values never reach a log line: ``JsonFormatter`` replaces every known secret value
(and its JSON-escaped form) with ``[REDACTED]`` in the message and in the traceback text.

Imports nothing from ``bubu``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any

__all__ = ["REDACTED", "JsonFormatter", "install", "mask_values"]

REDACTED = "[REDACTED]"

# LogRecord attributes that are not user "extra" fields.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def mask_values(text: str, values: Iterable[str]) -> str:
    """Replace each of ``values`` in ``text`` (raw and JSON-escaped) with ``[REDACTED]``.

    Longer values are replaced first so a secret that contains another is masked whole.
    Values shorter than 4 characters are ignored: masking ``"a"`` everywhere would destroy
    the text without protecting anything.
    """
    for value in sorted({v for v in values if len(v) >= 4}, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
        escaped = json.dumps(value)[1:-1]
        if escaped != value and escaped in text:
            text = text.replace(escaped, REDACTED)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``msg``, extras, ``exc``.

    Args:
        secret_values: values to mask wherever they appear.
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = tuple(secret_values)

    def add_secret_values(self, values: Iterable[str]) -> None:
        """Mask these values too (secrets are expanded after logging starts)."""
        self._secrets = (*self._secrets, *values)

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one JSON line with secrets masked."""
        entry: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text  # already rendered (and masked) by a filter
        line = json.dumps(entry, default=str, ensure_ascii=False)
        return mask_values(line, self._secrets) if self._secrets else line


@contextlib.contextmanager
def install(
    *, debug: bool = False, stream: IO[str] | None = None, secret_values: Iterable[str] = ()
) -> Iterator[JsonFormatter | None]:
    """Install the JSON handler for the duration of a run, if nobody configured logging.

    Args:
        debug: log at DEBUG instead of INFO (``BUBU_DEBUG``).
        stream: where to write; standard output by default (as Go).
        secret_values: values to mask from the start.

    Yields:
        The formatter (so secret values can be added later), or None when the root logger
        already had handlers and was left alone.
    """
    root = logging.getLogger()
    bubu_logger = logging.getLogger("bubu")
    previous_level = bubu_logger.level
    bubu_logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if root.handlers:
        try:
            yield None
        finally:
            bubu_logger.setLevel(previous_level)
        return
    formatter = JsonFormatter(secret_values)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(formatter)
    previous_root = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    try:
        yield formatter
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_root)
        bubu_logger.setLevel(previous_level)
        with contextlib.suppress(Exception):
            handler.flush()
