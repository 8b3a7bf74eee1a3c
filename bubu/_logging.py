"""JSON log lines, run context fields and secret masking for every output of a run.

The Go SDK's default logger is slog JSON on stdout at level Debug when ``BUBU_DEBUG`` is truthy,
else Info. ``install()`` does the same for the process that runs an entry point: it attaches one
JSON handler to the root logger **only when the root logger has none** (an application or
pytest that configured logging keeps its own), and removes it again when the run ends.

Secret values never reach a log line, whoever configured logging: ``install()`` puts a
:class:`MaskingFilter` on *every* root handler (ours or the application's), and the
:class:`JsonFormatter` masks the finished line too (extra fields included). The mask itself is
a callable (``bubu._runtime.redact.SecretMask`` in practice) so this module stays at the bottom
of the layers. :class:`MaskingStream` applies the same mask to ``sys.stdout``/``sys.stderr``
(what an engram prints) and :func:`masking_excepthook` to uncaught exceptions; the start-up
sequence installs all of them (docs/architecture.md "Start-up").

Imports nothing from ``bubu``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any

__all__ = [
    "REDACTED",
    "ContextFilter",
    "JsonFormatter",
    "Mask",
    "MaskingFilter",
    "MaskingStream",
    "install",
    "masking_excepthook",
]

REDACTED = "[REDACTED]"

Mask = Callable[[str], str]
"""Text in, the same text with known secret values replaced by ``[REDACTED]`` out."""

# LogRecord attributes that are not user "extra" fields.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _no_mask(text: str) -> str:
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``msg``, extras, ``exc``.

    Args:
        mask: applied to the finished line (message, extra fields and traceback).
    """

    def __init__(self, mask: Mask | None = None) -> None:
        super().__init__()
        self.mask: Mask = mask if mask is not None else _no_mask

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
        if record.stack_info:
            entry["stack"] = record.stack_info
        return self.mask(json.dumps(entry, default=str, ensure_ascii=False))


class MaskingFilter(logging.Filter):
    """Masks secret values in a record's message, traceback and stack before any handler
    formats it (so a plain-text handler an application installed is covered too).

    Records are shared by every handler, so the record is rewritten in place, once.
    """

    def __init__(self, mask: Mask) -> None:
        super().__init__()
        self.mask = mask

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` with secrets masked; never drops it."""
        mask = self.mask
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: leave it to the handler's own error path
            return True
        masked = mask(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Adds the run's context fields (``mode``, ``storyRun``, ``stepRun``...) to every record
    that does not carry them already; the JSON formatter prints them as top-level keys."""

    def __init__(self, fields: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.fields: dict[str, str] = dict(fields or {})

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops the record."""
        for key, value in self.fields.items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


class MaskingStream:
    """A text stream that masks secret values in everything written to it.

    Used for ``sys.stdout``/``sys.stderr`` while a run is active, so what an engram prints (or a
    library writes there) is masked like the logs. Each ``write`` is masked whole: ``print``
    writes each argument in one call, so a value is only missed when code writes it in pieces,
    or writes bytes to the underlying file descriptor directly.
    """

    def __init__(self, inner: IO[str], mask: Mask) -> None:
        self._inner = inner
        self._mask = mask

    @property
    def inner(self) -> IO[str]:
        """The wrapped stream."""
        return self._inner

    def replace_inner(self, inner: IO[str]) -> None:
        """Wrap ``inner`` instead (a wrapper below this one is being removed)."""
        self._inner = inner

    def write(self, text: str) -> int:
        """Write ``text`` with secrets masked; returns ``len(text)`` as callers expect."""
        self._inner.write(self._mask(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        """Write each line, masked."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, fileno, isatty, buffer...: the wrapped stream's.
        return getattr(self._inner, name)


def masking_excepthook(
    mask: Mask, stream: Callable[[], IO[str]] = lambda: sys.stderr
) -> Callable[[type[BaseException], BaseException, TracebackType | None], None]:
    """Return a ``sys.excepthook`` that prints the traceback with secret values masked."""

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        out = stream()
        out.write(mask(text))
        out.flush()

    return hook


@contextlib.contextmanager
def install(
    *,
    debug: bool = False,
    stream: IO[str] | None = None,
    mask: Mask | None = None,
    fields: ContextFilter | None = None,
    configure: bool = True,
    level: int | None = None,
) -> Iterator[logging.Handler | None]:
    """Install logging for the duration of a run; undo everything on exit.

    * with ``configure``: the JSON handler on the root logger if nobody configured logging
      (else the existing handlers are kept), and the ``bubu`` logger at DEBUG or INFO;
    * always: a :class:`MaskingFilter` (when ``mask`` is given) and the context ``fields`` on
      every root handler (the JSON one included) and on ``logging.lastResort``, which prints
      warnings when no handler is configured at all.

    Args:
        debug: log at DEBUG instead of INFO (``BUBU_DEBUG``).
        stream: where the JSON handler writes; standard output by default (as Go).
        mask: the secret mask.
        fields: the run's context fields filter.
        configure: install the handler and levels (harnesses pass False: a library does not
            configure logging).
        level: the ``bubu`` logger's level instead of the one ``debug`` gives (the CLI keeps
            the SDK's lifecycle lines quiet unless ``--verbose``).

    Yields:
        The JSON handler installed, or None when none was.
    """
    root = logging.getLogger()
    bubu_logger = logging.getLogger("bubu")
    previous_level = bubu_logger.level
    previous_root = root.level
    ours: logging.Handler | None = None
    if configure:
        bubu_logger.setLevel(
            level if level is not None else logging.DEBUG if debug else logging.INFO
        )
        if not root.handlers:
            ours = logging.StreamHandler(stream if stream is not None else sys.stdout)
            ours.setFormatter(JsonFormatter(mask))
            root.addHandler(ours)
            root.setLevel(logging.DEBUG if debug else logging.INFO)
    handlers = list(root.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    added: list[tuple[logging.Handler, logging.Filter]] = []
    filters: list[logging.Filter] = [f for f in (fields,) if f is not None]
    if mask is not None:
        filters.append(MaskingFilter(mask))
    for handler in handlers:
        for flt in filters:
            handler.addFilter(flt)
            added.append((handler, flt))
    try:
        yield ours
    finally:
        for handler, flt in added:
            handler.removeFilter(flt)
        if ours is not None:
            root.removeHandler(ours)
            root.setLevel(previous_root)
            with contextlib.suppress(Exception):
                ours.flush()
        if configure:
            bubu_logger.setLevel(previous_level)
