"""Storage and Kubernetes references in payloads: recognising, parsing, validating, selecting.

Pure functions on decoded JSON values (docs/storage.md "References"); no I/O, so any layer can
use them (the storage manager hydrates with them, the template evaluator builds lazy selectors
with them). The rules are those of the operator's storage package (bobrapet ``pkg/storage``
v0.1.13, docs/contract/storage.md):

* A **storage ref** is a map holding a string ``$bubuStorageRef`` and no keys other than
  ``$bubuStoragePath`` (a string selector), ``$bubuStorageContentType``, ``$bubuStorageSchema``
  and ``$bubuStorageSchemaVersion``.
* A **ConfigMap / Secret ref** is a map whose only key is ``$bubuConfigMapRef`` /
  ``$bubuSecretRef``, holding ``"name:key"``, ``"ns/name:key"`` or ``{name, key, namespace?,
  format?}``. An explicit namespace must be the workload namespace.
* A **selector** (``$bubuStoragePath``) is ``.field``, ``[index]`` and ``[*]`` (every element
  of an array); fields are separated by ``.``.
* A **storage path** is relative, and has no ``..`` segment, also with ``\\`` read as ``/``.

The API the template evaluator uses: ``template_selector`` (core templating's looser reading of
a ref), ``mentions_storage_ref``, ``storage_ref_paths``, ``selector_path`` and ``make_selector``
(build the lazy ``{"$bubuStorageRef", "$bubuStoragePath"}`` value). The storage manager uses
``storage_ref_selector``, ``kube_ref_of``, ``resolve_selector`` and ``contains_storage_ref``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from bubu._runtime import parse

# The payload scan lives in bubu._runtime.scan (light: on every step's path); re-exported here.
from bubu._runtime.scan import TEMPLATE_KEY, Scan, scan
from bubu.errors import StorageRefError

__all__ = [
    "ALLOWED_STORAGE_REF_KEYS",
    "CONFIG_MAP_REF_KEY",
    "SECRET_REF_KEY",
    "STORAGE_CONTENT_TYPE_KEY",
    "STORAGE_PATH_KEY",
    "STORAGE_REF_KEY",
    "STORAGE_SCHEMA_KEY",
    "STORAGE_SCHEMA_VERSION_KEY",
    "TEMPLATE_KEY",
    "KubeRef",
    "Scan",
    "SelectorToken",
    "clean_path",
    "contains_storage_ref",
    "decode_ref_value",
    "go_type_name",
    "is_storage_ref",
    "kube_ref_of",
    "make_selector",
    "mentions_storage_ref",
    "parse_kube_ref",
    "parse_selector",
    "resolve_selector",
    "scan",
    "selector_path",
    "storage_ref_paths",
    "storage_ref_selector",
    "template_selector",
    "validate_storage_path",
]

STORAGE_REF_KEY: Final = "$bubuStorageRef"
STORAGE_PATH_KEY: Final = "$bubuStoragePath"
STORAGE_CONTENT_TYPE_KEY: Final = "$bubuStorageContentType"
STORAGE_SCHEMA_KEY: Final = "$bubuStorageSchema"
STORAGE_SCHEMA_VERSION_KEY: Final = "$bubuStorageSchemaVersion"
CONFIG_MAP_REF_KEY: Final = "$bubuConfigMapRef"
SECRET_REF_KEY: Final = "$bubuSecretRef"

ALLOWED_STORAGE_REF_KEYS: Final = frozenset(
    {
        STORAGE_REF_KEY,
        STORAGE_PATH_KEY,
        STORAGE_CONTENT_TYPE_KEY,
        STORAGE_SCHEMA_KEY,
        STORAGE_SCHEMA_VERSION_KEY,
    }
)


# --- storage refs ------------------------------------------------------------------------------


def storage_ref_selector(value: Any) -> tuple[str, str] | None:
    """Return ``(path, selector)`` when ``value`` is a storage ref, else ``None``.

    ``selector`` is ``""`` without ``$bubuStoragePath``. A non-string path or selector, or any
    key outside ``ALLOWED_STORAGE_REF_KEYS``, makes the map ordinary data (Go
    ``storageRefSelector``).
    """
    if not isinstance(value, Mapping):
        return None
    ref = value.get(STORAGE_REF_KEY)
    if not isinstance(ref, str):
        return None
    selector = value.get(STORAGE_PATH_KEY, "")
    if not isinstance(selector, str):
        return None
    if any(key not in ALLOWED_STORAGE_REF_KEYS for key in value):
        return None
    return ref, selector


def is_storage_ref(value: Any) -> bool:
    """Whether ``value`` is a storage ref map (string ref, only the allowed keys).

    Unlike ``storage_ref_selector`` a non-string ``$bubuStoragePath`` does not matter here, as
    in Go's ``containsStorageRef``.
    """
    if not isinstance(value, Mapping):
        return False
    if not isinstance(value.get(STORAGE_REF_KEY), str):
        return False
    return all(key in ALLOWED_STORAGE_REF_KEYS for key in value)


def contains_storage_ref(value: Any, max_depth: int) -> bool:
    """Whether a storage ref occurs in ``value`` within ``max_depth`` levels of nesting.

    Deeper levels are not searched (Go ``containsStorageRef`` stops at the recursion limit).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            continue
        if isinstance(item, Mapping):
            if is_storage_ref(item):
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return False


def template_selector(value: Any) -> tuple[str, str] | None:
    """``(ref, selector)`` as core's templating reads a storage ref: any map whose
    ``$bubuStorageRef`` is a non-blank string, whatever other keys it has.

    Looser than ``storage_ref_selector`` (the storage package's rule) on purpose: the template
    functions refuse to look inside anything that points at offloaded data
    (docs/templates.md#offloaded-step-outputs).
    """
    if not isinstance(value, Mapping):
        return None
    ref = value.get(STORAGE_REF_KEY)
    if not isinstance(ref, str) or not ref.strip():
        return None
    selector = value.get(STORAGE_PATH_KEY)
    return ref, selector if isinstance(selector, str) else ""


def mentions_storage_ref(value: Any) -> bool:
    """Whether any map inside ``value`` has a ``$bubuStorageRef`` key (core templating's
    ``containsStorageRef``: the key alone counts; cycles are not followed)."""
    visiting: set[int] = set()

    def walk(node: Any) -> bool:
        if isinstance(node, Mapping | list | tuple):
            if id(node) in visiting:
                return False
            visiting.add(id(node))
            try:
                if isinstance(node, Mapping):
                    return STORAGE_REF_KEY in node or any(walk(v) for v in node.values())
                return any(walk(v) for v in node)
            finally:
                visiting.discard(id(node))
        return False

    return walk(value)


RefPath = tuple[str | int, ...]


def storage_ref_paths(value: Mapping[str, Any] | None) -> list[RefPath]:
    """Paths of every map holding a ``$bubuStorageRef`` key (not looking inside one), in
    document order (the SDK's ``findStorageRefPaths``: what hydration will replace by user
    data that templates must not evaluate, docs/templates.md#storage-values-are-data)."""
    found: list[RefPath] = []

    def walk(node: Any, path: RefPath) -> None:
        if isinstance(node, dict):
            if STORAGE_REF_KEY in node:
                found.append(path)
                return
            for key, item in node.items():
                walk(item, (*path, key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, (*path, i))

    for key, item in (value or {}).items():
        walk(item, (key,))
    return found


def validate_storage_path(path: str) -> None:
    """Refuse a storage path that is empty, absolute or climbs with ``..`` (Go
    ``validateStorageRef``).

    ``\\`` counts as a separator for the ``..`` test, so ``a\\..\\b`` is refused too.

    Raises:
        StorageRefError: naming the path.
    """
    if path == "":
        raise StorageRefError("storage reference path is empty", ref=path)
    if path.startswith("/"):
        raise StorageRefError(
            f"invalid storage reference: absolute paths not allowed (got '{path}')", ref=path
        )
    if ".." in path.replace("\\", "/").split("/"):
        raise StorageRefError(
            f"invalid storage reference: path traversal detected (got '{path}')", ref=path
        )


def clean_path(path: str) -> str:
    """Go ``filepath.Clean`` of a relative path: the object key both stores use."""
    return posixpath.normpath(path) if path else "."


# --- selectors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SelectorToken:
    """One step of a selector: a field name, an array index, or ``[*]``."""

    kind: Literal["field", "index", "wildcard"]
    field: str = ""
    index: int = 0


def parse_selector(path: str) -> tuple[SelectorToken, ...]:
    """Parse a ``$bubuStoragePath`` selector (Go ``parseStoragePath``).

    Raises:
        StorageRefError: ``path is empty``, ``unterminated index in path``, ``empty index in
            path``, ``invalid index "<i>"`` or ``empty field in path``.
    """
    text = parse.go_trim_space(path)
    if not text:
        raise StorageRefError("path is empty")
    tokens: list[SelectorToken] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ".":
            i += 1
            continue
        if ch == "[":
            end = text.find("]", i)
            if end == -1:
                raise StorageRefError("unterminated index in path")
            raw = parse.go_trim_space(text[i + 1 : end])
            if not raw:
                raise StorageRefError("empty index in path")
            if raw == "*":
                tokens.append(SelectorToken("wildcard"))
            else:
                try:
                    idx = parse.parse_atoi(raw)
                except parse.GoParseError:
                    raise StorageRefError(f"invalid index {parse.go_quote(raw)}") from None
                tokens.append(SelectorToken("index", index=idx))
            i = end + 1
            continue
        start = i
        while i < len(text) and text[i] not in ".[":
            i += 1
        name = parse.go_trim_space(text[start:i])
        if not name:
            raise StorageRefError("empty field in path")
        tokens.append(SelectorToken("field", field=name))
    return tuple(tokens)


def go_type_name(value: Any) -> str:
    """Go's ``%T`` of a decoded JSON value, for messages that match Go's."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return type(value).__name__


def _resolve(
    value: Any, tokens: tuple[SelectorToken, ...], allow_missing: bool
) -> tuple[Any, bool]:
    for pos, token in enumerate(tokens):
        if token.kind == "field":
            if not isinstance(value, Mapping):
                raise StorageRefError(
                    f"expected object for field {parse.go_quote(token.field)}, "
                    f"got {go_type_name(value)}"
                )
            if token.field not in value:
                if allow_missing:
                    return None, False
                raise StorageRefError(f"missing field {parse.go_quote(token.field)}")
            value = value[token.field]
        elif token.kind == "index":
            if not isinstance(value, list | tuple):
                raise StorageRefError(
                    f"expected array for index {token.index}, got {go_type_name(value)}"
                )
            if not 0 <= token.index < len(value):
                if allow_missing:
                    return None, False
                raise StorageRefError(f"index {token.index} out of bounds")
            value = value[token.index]
        else:
            if not isinstance(value, list | tuple):
                raise StorageRefError(
                    f"expected array for wildcard index, got {go_type_name(value)}"
                )
            rest = tokens[pos + 1 :]
            out: list[Any] = []
            for item in value:
                resolved, exists = _resolve(item, rest, True)
                out.append(resolved if exists else None)
            return out, True
    return value, value is not None


def resolve_selector(value: Any, path: str) -> Any:
    """Apply a selector to hydrated data (Go ``resolveStoragePath``).

    After ``[*]`` a missing field or index gives ``None`` for that element instead of an
    error, as in Go.

    Raises:
        StorageRefError: a malformed selector, a missing field, an index out of bounds, or a
            step into the wrong type (``expected array for index 0, got string``).
    """
    resolved, _ = _resolve(value, parse_selector(path), False)
    return resolved


def selector_path(segments: Iterable[str | int]) -> str:
    """Build a selector from path segments: ``["items", 0, "name"]`` -> ``items[0].name``.

    The inverse of ``parse_selector`` for field names without ``.`` or ``[`` (Go templating
    ``buildStoragePath``).
    """
    out: list[str] = []
    for seg in segments:
        if isinstance(seg, int) and not isinstance(seg, bool):
            out.append(f"[{seg}]")
        else:
            if out:
                out.append(".")
            out.append(str(seg))
    return "".join(out)


def make_selector(ref: str, path: str) -> dict[str, str]:
    """The lazy selector value ``{"$bubuStorageRef": ref, "$bubuStoragePath": path}``.

    Hydrating it reads ``ref`` and applies ``path``; an empty ``path`` selects the whole object.
    """
    if not path:
        return {STORAGE_REF_KEY: ref}
    return {STORAGE_REF_KEY: ref, STORAGE_PATH_KEY: path}


# --- ConfigMap and Secret refs -------------------------------------------------------------------

RefKind = Literal["configmap", "secret"]
RefFormat = Literal["auto", "json", "raw"]


@dataclass(frozen=True, slots=True)
class KubeRef:
    """A resolved ``$bubuConfigMapRef`` / ``$bubuSecretRef``.

    Attributes:
        kind: ``configmap`` or ``secret``.
        namespace: the workload namespace (explicit or defaulted).
        name: the object name.
        key: the data key.
        format: ``auto`` (JSON when it parses, else the text), ``json`` or ``raw``; other
            values are kept and refused when the value is decoded, as in Go.
    """

    kind: RefKind
    namespace: str
    name: str
    key: str
    format: str = "auto"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}:{self.key}"


def kube_ref_of(value: Any) -> tuple[RefKind, Any] | None:
    """Return ``(kind, raw ref)`` when ``value`` is a map whose only key is a kube-ref key."""
    if not isinstance(value, Mapping) or len(value) != 1:
        return None
    if CONFIG_MAP_REF_KEY in value:
        return "configmap", value[CONFIG_MAP_REF_KEY]
    if SECRET_REF_KEY in value:
        return "secret", value[SECRET_REF_KEY]
    return None


def _enforce_namespace(namespace: str, workload_namespace: str) -> None:
    if not namespace:
        return
    if not workload_namespace:
        raise StorageRefError(
            f"explicit namespace {parse.go_quote(namespace)} is not allowed without workload "
            "namespace context",
            ref=namespace,
        )
    if namespace != workload_namespace:
        raise StorageRefError(
            f"cross-namespace references are not allowed: {parse.go_quote(namespace)} "
            f"(workload namespace: {parse.go_quote(workload_namespace)})",
            ref=namespace,
        )


def parse_kube_ref(kind: RefKind, raw: Any, workload_namespace: str) -> KubeRef:
    """Parse a ConfigMap or Secret reference (Go ``parseKubeRef``).

    Args:
        kind: which reference key held it.
        raw: ``"name:key"``, ``"ns/name:key"`` or ``{name, key, namespace?, format?}``.
        workload_namespace: the first non-empty of ``BUBU_POD_NAMESPACE``,
            ``BUBU_STEPRUN_NAMESPACE``, ``BUBU_TARGET_STORY_NAMESPACE``,
            ``BUBU_IMPULSE_NAMESPACE`` (``RuntimeEnv.workload_namespace``).

    Raises:
        StorageRefError: a malformed reference, or a namespace other than the workload's.
    """
    trim = parse.go_trim_space
    if isinstance(raw, str):
        text = trim(raw)
        if not text:
            raise StorageRefError("reference is empty")
        ns_name, sep, key = text.partition(":")
        key = trim(key)
        if not sep or not key:
            raise StorageRefError(
                f"invalid reference {parse.go_quote(text)} (expected name:key or "
                "namespace/name:key)",
                ref=text,
            )
        ns_name = trim(ns_name)
        namespace, slash, name = ns_name.partition("/")
        if slash:
            namespace, name = trim(namespace), trim(name)
        else:
            namespace, name = "", trim(ns_name)
        _enforce_namespace(namespace, workload_namespace)
        if not name:
            raise StorageRefError(
                f"invalid reference {parse.go_quote(text)} (missing name)", ref=text
            )
        namespace = namespace or workload_namespace
        if not namespace:
            raise StorageRefError(
                f"namespace is required for reference {parse.go_quote(text)}", ref=text
            )
        return KubeRef(kind, namespace, name, key, "auto")
    if isinstance(raw, Mapping):

        def text_of(field: str) -> str:
            v = raw.get(field)
            return trim(v) if isinstance(v, str) else ""

        name, key = text_of("name"), text_of("key")
        namespace, fmt = text_of("namespace"), text_of("format")
        if not name or not key:
            raise StorageRefError("reference requires name and key")
        _enforce_namespace(namespace, workload_namespace)
        namespace = namespace or workload_namespace
        if not namespace:
            raise StorageRefError(
                f"namespace is required for reference {name}:{key}", ref=f"{name}:{key}"
            )
        return KubeRef(kind, namespace, name, key, fmt or "auto")
    raise StorageRefError(f"invalid ref type {go_type_name(raw)}")


def decode_ref_value(raw: bytes, ref: KubeRef) -> Any:
    """Decode a ConfigMap/Secret value by the ref's format (Go ``decodeRefValue``).

    ``auto``: empty (after trimming) gives ``""``, valid JSON gives the decoded value, anything
    else the text. ``json``: must decode. ``raw``: the text.

    Raises:
        StorageRefError: invalid JSON with ``format: json``, or an unknown format.
    """
    fmt = parse.go_trim_space(ref.format).lower()
    text = raw.decode("utf-8", "replace")
    if fmt == "raw":
        return text
    if fmt == "json":
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise StorageRefError(
                f"failed to decode JSON from {ref}: {exc}", ref=str(ref)
            ) from None
    if fmt in ("", "auto"):
        trimmed = parse.go_trim_space(text)
        if not trimmed:
            return ""
        try:
            return msgspec.json.decode(trimmed)
        except msgspec.DecodeError:
            return text
    raise StorageRefError(
        f"unsupported format {parse.go_quote(ref.format)} for {ref}", ref=str(ref)
    )
