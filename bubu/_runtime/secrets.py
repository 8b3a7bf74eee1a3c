"""Secrets: the redacting container handed to ``init``, and descriptor expansion.

Owns docs/contract/runtime-environment.md#secrets: ``BUBU_SECRET_<NAME>`` descriptors
(``env:<PREFIX>``, ``file:<path>`` or a literal) are expanded into plaintext values that live only
inside ``Secrets``. Every way a value could leak by accident is closed: ``repr``/``str``/``format``
print ``[redacted secrets]``, there is no ``__dict__`` (``__slots__``), the class is not a ``dict``,
and pickling is refused. Errors name the logical secret and the descriptor kind, never a path,
prefix or value.

Expansion reads files (blocking, small and bounded); callers on the event loop may run it in a
thread. This module imports only ``bubu.errors`` and ``_runtime.sources``.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from typing import Any, Final, NoReturn

from bubu._runtime.sources import EnvSource, OsEnviron
from bubu.errors import SecretExpansionError

__all__ = ["Descriptors", "SecretValue", "Secrets", "expand_secrets"]

logger = logging.getLogger("bubu.runtime")

REDACTED: Final = "[REDACTED]"
_REDACTED_SECRETS: Final = "[redacted secrets]"

# Limits for one file: descriptor (docs/contract/runtime-environment.md#secrets).
MAX_FILES: Final = 256
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_TOTAL_BYTES: Final = 8 * 1024 * 1024


def _refuse_pickle(kind: str) -> NoReturn:
    raise TypeError(f"{kind} cannot be pickled: it holds secret values")


class SecretValue:
    """One sensitive string (an S3 secret key, a session token) that never prints itself.

    ``reveal()`` returns the plaintext; ``repr``/``str`` print ``[REDACTED]``.
    """

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        self.__value = value

    def reveal(self) -> str:
        """Return the plaintext value."""
        return self.__value

    def __repr__(self) -> str:
        return f"SecretValue({REDACTED!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash((SecretValue, self.__value))

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _refuse_pickle("SecretValue")


class Descriptors(Mapping[str, str]):
    """The unexpanded ``BUBU_SECRET_*`` descriptors, by logical name.

    A literal descriptor *is* the secret value, so this mapping redacts itself like ``Secrets``.
    """

    __slots__ = ("__items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self.__items: dict[str, str] = dict(items or {})

    def __getitem__(self, key: str) -> str:
        return self.__items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.__items))

    def __len__(self) -> int:
        return len(self.__items)

    def __repr__(self) -> str:
        return f"Descriptors(names={sorted(self.__items)!r})"

    def __str__(self) -> str:
        return self.__repr__()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Descriptors):
            return self.__items == other.__items
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.__items.items())))

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _refuse_pickle("Descriptors")


class Secrets:
    """The expanded secrets of a step, handed to ``init(config, secrets)``.

    Values are plaintext inside and never printed: ``repr``, ``str``, f-strings and logging all
    show ``[redacted secrets]``. ``get_all()`` and ``select()`` return plaintext copies on purpose
    (see docs/differences.md: the Go ``GetAll()`` returns ``[REDACTED]`` values, against its docs).

    Args:
        values: plaintext values by key; copied. Mostly built by ``expand_secrets``; tests and
            harnesses may build one directly.
    """

    __slots__ = ("__values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.__values: dict[str, str] = dict(values or {})

    def get(self, key: str) -> str | None:
        """Return the value of ``key``, or ``None`` when absent (``""`` is a present value)."""
        return self.__values.get(key)

    def get_all(self) -> dict[str, str]:
        """Return a plaintext copy of every secret; changing it does not change this object."""
        return dict(self.__values)

    def names(self) -> list[str]:
        """Return the secret keys, sorted; a new list each call."""
        return sorted(self.__values)

    def select(self, *keys: str) -> dict[str, str]:
        """Return a plaintext copy of the requested keys that exist; missing keys are ignored."""
        return {k: self.__values[k] for k in keys if k in self.__values}

    def __contains__(self, key: object) -> bool:
        return key in self.__values

    def __len__(self) -> int:
        return len(self.__values)

    def __iter__(self) -> Iterator[str]:
        # Keys only, sorted: iteration never yields values.
        return iter(sorted(self.__values))

    def __repr__(self) -> str:
        return f"<Secrets {_REDACTED_SECRETS}>"

    def __str__(self) -> str:
        return _REDACTED_SECRETS

    def __format__(self, spec: str) -> str:
        return _REDACTED_SECRETS

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secrets):
            return self.__values == other.__values
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> Secrets:
        return Secrets(self.__values)

    def __deepcopy__(self, memo: dict[int, Any]) -> Secrets:
        return Secrets(self.__values)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _refuse_pickle("Secrets")


# --- expansion (docs/contract/runtime-environment.md#secrets) -------------------------------------


class _Failure(Exception):
    """One descriptor failed; the message is already sanitised (no path, prefix or value)."""


def _kind(descriptor: str) -> str:
    if descriptor.startswith("file:"):
        return "file"
    if descriptor.startswith("env:"):
        return "env"
    return "literal"


def _os_error_text(op: str, exc: OSError) -> str:
    # Go reduces a PathError to "<op>: <errno text>" so the path never leaks
    # (docs/contract/runtime-environment.md#secrets).
    return f"{op}: {exc.strerror or type(exc).__name__}".lower()


def _store(dest: dict[str, str], key: str, value: str, *, overwrite: bool, source: str) -> None:
    key = key.strip()
    if not key:
        logger.warning("skipping secret with empty key", extra={"source": source})
        return
    if key in dest:
        if not overwrite:
            logger.warning(
                "secret key collision; keeping existing value", extra={"key": key, "source": source}
            )
            return
        logger.warning(
            "secret key collision; overriding existing value", extra={"key": key, "source": source}
        )
    dest[key] = value


def _expand_env(descriptor: str, source: EnvSource) -> dict[str, str]:
    prefix = descriptor[len("env:") :]  # not trimmed, as in Go
    if not prefix:
        raise _Failure("invalid secret descriptor: env secret prefix must not be empty")
    out: dict[str, str] = {}
    for name, value in sorted(source.items()):
        if not name.startswith(prefix):
            continue
        key = name[len(prefix) :]
        if not key:
            logger.warning("secret env prefix matched empty key")
            continue
        _store(out, key, value, overwrite=False, source=f"env:{key}")
    return out


class _FileState:
    __slots__ = ("files", "total")

    def __init__(self) -> None:
        self.files = 0
        self.total = 0


def _read_secret_file(path: str, key: str, state: _FileState, out: dict[str, str]) -> None:
    if state.files >= MAX_FILES:
        raise _Failure(f"invalid secret descriptor: secret file count exceeds max {MAX_FILES}")
    try:
        with open(path, "rb") as fh:
            content = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Failure(_os_error_text("open", exc)) from None
    if len(content) > MAX_FILE_BYTES:
        raise _Failure(
            f"invalid secret descriptor: secret file {key} exceeds max size {MAX_FILE_BYTES}"
        )
    if state.total + len(content) > MAX_TOTAL_BYTES:
        raise _Failure(
            "invalid secret descriptor: secret file expansion exceeds max total size "
            f"{MAX_TOTAL_BYTES}"
        )
    state.files += 1
    state.total += len(content)
    text = content.decode("utf-8", "surrogateescape").rstrip("\n")
    _store(out, key, text, overwrite=False, source=f"file:{key}")


def _inside(root_real: str, candidate: str) -> bool:
    return candidate == root_real or candidate.startswith(root_real.rstrip(os.sep) + os.sep)


def _expand_file(descriptor: str) -> dict[str, str]:
    root = descriptor[len("file:") :].strip()
    if not root:
        raise _Failure("invalid secret descriptor: file secret path must not be empty")
    try:
        root_stat = os.lstat(root)
    except OSError as exc:
        raise _Failure(_os_error_text("lstat", exc)) from None
    if stat.S_ISLNK(root_stat.st_mode):
        raise _Failure("invalid secret descriptor: file secret path must not be a symlink")
    out: dict[str, str] = {}
    state = _FileState()
    if stat.S_ISREG(root_stat.st_mode):
        if root_stat.st_size > MAX_FILE_BYTES:
            raise _Failure(
                "invalid secret descriptor: secret file "
                f"{os.path.basename(root)} exceeds max size {MAX_FILE_BYTES}"
            )
        _read_secret_file(root, os.path.basename(root), state, out)
        return out
    if not stat.S_ISDIR(root_stat.st_mode):
        raise _Failure(
            "invalid secret descriptor: file secret path must reference a regular file or directory"
        )
    root_real = os.path.realpath(root)
    # Walk in sorted order so limits and collisions are deterministic.
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            entries = sorted(os.scandir(abs_dir), key=lambda e: e.name)
        except OSError as exc:
            raise _Failure(_os_error_text("open", exc)) from None
        subdirs: list[str] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            # Kubernetes secret volumes keep the real files under "..<timestamp>/" and "..data";
            # the user-visible keys are symlinks into them (docs/differences.md). Skip the
            # internals, and follow a symlink only when it resolves to a regular file inside the
            # root.
            if entry.name.startswith(".."):
                continue
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not _inside(root_real, target) or not os.path.isfile(target):
                        logger.warning("skipping symlinked secret file", extra={"key": rel})
                        continue
                    if os.path.getsize(target) > MAX_FILE_BYTES:
                        raise _Failure(
                            f"invalid secret descriptor: secret file {rel} exceeds max size "
                            f"{MAX_FILE_BYTES}"
                        )
                    _read_secret_file(target, rel, state, out)
                elif entry.is_dir(follow_symlinks=False):
                    subdirs.append(rel)
                elif entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_size > MAX_FILE_BYTES:
                        raise _Failure(
                            f"invalid secret descriptor: secret file {rel} exceeds max size "
                            f"{MAX_FILE_BYTES}"
                        )
                    _read_secret_file(entry.path, rel, state, out)
                else:
                    logger.warning("skipping non-regular secret file", extra={"key": rel})
            except OSError as exc:
                raise _Failure(_os_error_text("stat", exc)) from None
        stack.extend(reversed(subdirs))
    return out


def expand_secrets(
    descriptors: Mapping[str, str] | None,
    source: EnvSource | None = None,
) -> Secrets:
    """Expand ``BUBU_SECRET_*`` descriptors into ``Secrets``, failing closed.

    See docs/contract/runtime-environment.md#secrets.

    Logical names are processed in sorted order. ``env:<PREFIX>`` imports every variable of
    ``source`` whose name starts with PREFIX (key = the rest of the name); ``file:<path>`` reads a
    file (key = its basename) or a directory tree (key = the relative path with ``/``), trimming
    trailing newlines, within 256 files, 1 MiB per file and 8 MiB in total; anything else is a
    literal value under the logical name. A literal always wins a key collision; an expanded key
    never overwrites an existing one. A failed descriptor contributes none of its keys.

    Args:
        descriptors: logical name to descriptor (``RuntimeEnv.secret_descriptors``).
        source: where ``env:`` prefixes are looked up; ``os.environ`` when ``None``.

    Returns:
        The expanded secrets.

    Raises:
        SecretExpansionError: if any descriptor fails; the message joins one line per failure,
            ``secret expansion failed: secret "<name>" (<file|env>): <reason>``, and names no
            path, prefix or value.
    """
    src: EnvSource = source if source is not None else OsEnviron()
    items = dict(descriptors or {})
    expanded: dict[str, str] = {}
    issues: list[str] = []
    for name in sorted(items):
        descriptor = items[name]
        kind = _kind(descriptor)
        if kind == "literal":
            _store(expanded, name, descriptor, overwrite=True, source=f"literal:{name}")
            continue
        try:
            found = _expand_file(descriptor) if kind == "file" else _expand_env(descriptor, src)
        except _Failure as exc:
            logger.warning(
                f"secret {kind} expansion incomplete",
                extra={"secret": name, "descriptorKind": kind, "error": str(exc)},
            )
            issues.append(f'secret expansion failed: secret "{name}" ({kind}): {exc}')
            continue
        for key in sorted(found):
            _store(expanded, key, found[key], overwrite=False, source=f"{kind}:{key}")
    if issues:
        raise SecretExpansionError("\n".join(issues))
    return Secrets(expanded)
