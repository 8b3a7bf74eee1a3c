"""``Result``: what a batch engram's ``process`` returns (engram.Result / NewResultFrom).

Pure data; imports only msgspec.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Result"]


class Result(msgspec.Struct, frozen=True):
    """The output of a batch step.

    Args:
        data: a msgspec ``Struct``, a dict, or any JSON-serialisable value; ``None`` means
            "no output" (the StepRun gets none, as in Go).

    Example:
        ``return bubu.Result(Output(total=3))``
    """

    data: Any = None

    def to_builtins(self) -> Any:
        """Return ``data`` as JSON-ready builtins (dicts, lists, str, int, float, bool, None).

        Structs become dicts keyed by their encoded field names; datetimes, UUIDs and the like
        become strings, as ``msgspec.to_builtins`` converts them.

        Raises:
            TypeError: if ``data`` holds a value that has no JSON form.
        """
        return msgspec.to_builtins(self.data)
