"""core's template pre-processing: root normalisation, subscripts and the single-path fast path.

* ``inputs.x`` / ``steps.x`` / ``packet.x`` gain the leading dot (``.inputs.x``); other names
  (``story``, ``impulse``) do not, exactly as core's normaliser.
* ``.steps['fetch-feed'].output`` becomes ``(index .steps "fetch-feed").output``.
* A template that is one action holding a plain path (``{{ .inputs.items[0].id }}``) or an
  ``index`` path is evaluated directly and returns the typed value; a missing key is an error
  (``missing key at inputs.x``), under ``steps`` a ``TemplateBlockedError``; a path into a step
  output that is a storage reference returns the lazy selector
  ``{"$bubuStorageRef": ref, "$bubuStoragePath": rest}``.
"""

from __future__ import annotations

from typing import Any

from bubu._runtime import refs
from bubu._templating._values import go_type

__all__ = [
    "MissingKey",
    "PathError",
    "evaluate_index_path",
    "evaluate_simple_path",
    "normalize_template_roots",
]

ROOTS = frozenset({"inputs", "steps", "packet"})


class PathError(Exception):
    """The fast path failed (Go's ``cannot index into ...`` / ``cannot access key ...``)."""


class MissingKey(PathError):
    """``missing key at <path>``; ``blocked`` when the root is ``steps``."""

    def __init__(self, path: str, *, blocked: bool = False) -> None:
        super().__init__(f"missing key at {path}")
        self.path = path
        self.blocked = blocked


def _is_ident_start(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


def _is_ident_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def _find_action_end(text: str, start: int) -> int:
    in_single = in_double = in_raw = in_comment = False
    allow_comment = True
    i = start
    n = len(text)
    while i < n - 1:
        ch = text[i]
        nxt = text[i + 1]
        if in_comment:
            if ch == "*" and nxt == "/":
                in_comment = False
                i += 1
            i += 1
            continue
        if in_raw:
            if ch == "`":
                in_raw = False
            i += 1
            continue
        if in_single or in_double:
            if ch == "\\":
                i += 2
                continue
            if (in_single and ch == "'") or (in_double and ch == '"'):
                in_single = in_double = False
            i += 1
            continue
        if allow_comment and ch in " \t\n\r":
            i += 1
            continue
        if allow_comment and ch == "/" and nxt == "*":
            in_comment = True
            i += 2
            continue
        allow_comment = False
        if ch == "'":
            in_single = True
        elif ch == '"':
            in_double = True
        elif ch == "`":
            in_raw = True
        elif ch == "}" and nxt == "}":
            return i
        i += 1
    return -1


def _normalize_action_roots(action: str) -> str:
    out: list[str] = []
    in_single = in_double = in_raw = False
    prev = ""
    i = 0
    n = len(action)
    while i < n:
        ch = action[i]
        if in_raw:
            out.append(ch)
            if ch == "`":
                in_raw = False
            prev = ch
            i += 1
            continue
        if in_single or in_double:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(action[i + 1])
                prev = action[i + 1]
                i += 2
                continue
            if (in_single and ch == "'") or (in_double and ch == '"'):
                in_single = in_double = False
            prev = ch
            i += 1
            continue
        if ch in "'\"`":
            in_single, in_double, in_raw = ch == "'", ch == '"', ch == "`"
            out.append(ch)
            prev = ch
            i += 1
            continue
        if _is_ident_start(ch):
            start = i
            while i < n and _is_ident_char(action[i]):
                i += 1
            token = action[start:i]
            if token in ROOTS and prev not in (".", "$") and not (prev and _is_ident_char(prev)):
                out.append(".")
            out.append(token)
            prev = token[-1]
            continue
        out.append(ch)
        prev = ch
        i += 1
    return "".join(out)


def _parse_quoted_at(s: str, start: int) -> tuple[str, int] | None:
    if start >= len(s) or s[start] not in "\"'":
        return None
    quote = s[start]
    i = start + 1
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            i += 2
            continue
        if s[i] == quote:
            break
        i += 1
    if i >= len(s):
        return None
    value = _go_unquote(s[start : i + 1])
    if value is None:
        return None
    return value, i + 1


def _go_unquote(raw: str) -> str | None:
    from bubu._templating._parse import _go_unquote as unquote

    return unquote(raw)


def _go_quote(s: str) -> str:
    from bubu._templating._fmt import go_quote

    return go_quote(s)


def _subscript_receiver_start(s: str, pos: int) -> int:
    i = pos - 1
    while i >= 0:
        ch = s[i]
        if ch in "._-" or (ch.isascii() and ch.isalnum()):
            i -= 1
            continue
        if ch == ")":
            depth = 1
            i -= 1
            while i >= 0 and depth > 0:
                if s[i] == ")":
                    depth += 1
                elif s[i] == "(":
                    depth -= 1
                i -= 1
            continue
        break
    start = i + 1
    while start < pos and s[start] in " \t":
        start += 1
    return start


def _one_subscript(s: str) -> str:
    in_single = in_double = False
    for i, ch in enumerate(s):
        if in_single:
            if ch == "'":
                in_single = False
            continue
        if in_double:
            if ch == '"':
                in_double = False
            continue
        if ch == "'":
            in_single = True
        elif ch == '"':
            in_double = True
        elif ch == "[":
            if i + 1 >= len(s):
                continue
            parsed = _parse_quoted_at(s, i + 1)
            if parsed is None:
                continue
            key, nxt = parsed
            if nxt >= len(s) or s[nxt] != "]":
                continue
            start = _subscript_receiver_start(s, i)
            if start == i:
                continue
            receiver = s[start:i]
            return s[:start] + f"(index {receiver} {_go_quote(key)})" + s[nxt + 1 :]
    return s


def _normalize_subscripts(s: str) -> str:
    for _ in range(10_000):
        n = _one_subscript(s)
        if n == s:
            return s
        s = n
    return s


def normalize_template_roots(text: str) -> str:
    """core's ``normalizeTemplateRoots``: leading dots on roots, subscripts to ``index``."""
    if "{{" not in text:
        return text
    out: list[str] = []
    i = 0
    while True:
        start = text.find("{{", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        action_start = start + 2
        if action_start < len(text) and text[action_start] == "-":
            out.append("{{-")
            action_start += 1
        else:
            out.append("{{")
        end = _find_action_end(text, action_start)
        if end < 0:
            out.append(text[action_start:])
            break
        action_end = end
        trim_right = action_end > action_start and text[action_end - 1] == "-"
        if trim_right:
            action_end -= 1
        action = text[action_start:action_end]
        if action.strip().startswith("/*"):
            out.append(action)
        else:
            out.append(_normalize_subscripts(_normalize_action_roots(action)))
        out.append("-}}" if trim_right else "}}")
        i = end + 2
    return "".join(out)


# --- the fast path -----------------------------------------------------------------------------

Segment = str | int


def _read_ident(s: str, start: int) -> tuple[str, int]:
    i = start
    while i < len(s) and _is_ident_char(s[i]):
        i += 1
    return s[start:i], i


def parse_simple_path(expr: str) -> tuple[str, list[Segment]] | None:
    """core's ``parseSimplePath``: ``.root.a[0]["b"]``; None when it is not one."""
    trimmed = expr.strip()
    if not trimmed.startswith("."):
        return None
    trimmed = trimmed[1:]
    root, idx = _read_ident(trimmed, 0)
    if not root:
        return None
    segments: list[Segment] = []
    while idx < len(trimmed):
        ch = trimmed[idx]
        if ch == ".":
            ident, idx = _read_ident(trimmed, idx + 1)
            if not ident:
                return None
            segments.append(ident)
        elif ch == "[":
            end = trimmed.find("]", idx)
            if end < 0:
                return None
            raw = trimmed[idx + 1 : end].strip()
            if not raw:
                return None
            if (raw.startswith('"') and raw.endswith('"')) or (
                raw.startswith("'") and raw.endswith("'")
            ):
                key = _go_unquote(raw)
                if key is None:
                    return None
                segments.append(key)
            else:
                number = _atoi(raw)
                if number is None:
                    return None
                segments.append(number)
            idx = end + 1
        else:
            return None
    return root, segments


def _atoi(raw: str) -> int | None:
    body = raw[1:] if raw[:1] in "+-" else raw
    if not body or not body.isascii() or not body.isdigit():
        return None
    return int(raw)


def _type_name(value: Any) -> str:
    return go_type(value)


def eval_path(root: str, segments: list[Segment], variables: dict[str, Any]) -> Any:
    """core's ``evalPath``.

    Raises:
        MissingKey: a key or index is missing.
        PathError: a key into a non-map or an index into a non-list.
    """
    if root not in variables:
        raise MissingKey(root)
    current = variables[root]
    path = root
    for seg in segments:
        if isinstance(seg, int):
            if not isinstance(current, list | tuple):
                raise PathError(f"cannot index into {_type_name(current)} at {path}")
            if seg < 0 or seg >= len(current):
                raise MissingKey(path)
            current = current[seg]
            path = f"{path}[{seg}]"
            continue
        if not isinstance(current, dict):
            raise PathError(
                f"cannot access key {_go_quote(seg)} on {_type_name(current)} at {path}"
            )
        if seg not in current:
            raise MissingKey(f"{path}.{seg}")
        current = current[seg]
        path = f"{path}.{seg}"
    return current


def _storage_selector(root: str, segments: list[Segment], variables: dict[str, Any]) -> Any:
    if root != "steps":
        return None
    output_idx = next(
        (i for i, s in enumerate(segments) if isinstance(s, str) and s in ("output", "outputs")),
        -1,
    )
    if output_idx < 0:
        return None
    try:
        value = eval_path(root, segments[: output_idx + 1], variables)
    except PathError:
        return None
    if not isinstance(value, dict):
        return None
    ref = value.get(refs.STORAGE_REF_KEY)
    if not isinstance(ref, str) or not ref.strip():
        return None
    path = refs.selector_path(segments[output_idx + 1 :])
    if not path:
        return None
    return refs.make_selector(ref, path)


def _resolve(root: str, segments: list[Segment], variables: dict[str, Any]) -> Any:
    selector = _storage_selector(root, segments, variables)
    if selector is not None:
        return selector
    try:
        return eval_path(root, segments, variables)
    except MissingKey as exc:
        if root == "steps":
            raise MissingKey(exc.path, blocked=True) from None
        raise


_NOT_A_PATH = object()


def evaluate_simple_path(expr: str, variables: dict[str, Any]) -> Any:
    """The fast path for ``.root.a.b[0]``; ``_NOT_A_PATH`` when ``expr`` is not one.

    Raises:
        MissingKey, PathError: as ``eval_path``.
    """
    parsed = parse_simple_path(expr)
    if parsed is None:
        return _NOT_A_PATH
    return _resolve(parsed[0], parsed[1], variables)


def _find_matching_paren(s: str) -> int:
    depth = 0
    in_single = in_double = False
    i = 0
    while i < len(s):
        ch = s[i]
        if in_single or in_double:
            if (in_single and ch == "'") or (in_double and ch == '"'):
                in_single = in_double = False
            elif ch == "\\" and i + 1 < len(s):
                i += 1
            i += 1
            continue
        if ch == "'":
            in_single = True
        elif ch == '"':
            in_double = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _split_index_expression(expr: str) -> tuple[str, str] | None:
    trimmed = expr.strip()
    if not trimmed:
        return None
    if trimmed.startswith("index "):
        return trimmed, ""
    if not trimmed.startswith("("):
        return None
    end = _find_matching_paren(trimmed)
    if end <= 0:
        return None
    inner = trimmed[1:end].strip()
    suffix = trimmed[end + 1 :].strip()
    if not inner.startswith("index "):
        return None
    if suffix == "" or suffix.startswith((".", "[")):
        return inner, suffix
    return None


def _parse_index_call(expr: str) -> tuple[str, str] | None:
    trimmed = expr.strip()
    if not trimmed.startswith("index"):
        return None
    rest = trimmed[len("index") :].strip()
    rest = rest.lstrip(" \t")
    i = 0
    while i < len(rest) and rest[i] not in " \t":
        i += 1
    root_token, rest = rest[:i], rest[i:]
    if not root_token:
        return None
    rest = rest.lstrip(" \t")
    parsed = _parse_quoted_at(rest, 0)
    if parsed is None:
        return None
    key, nxt = parsed
    if rest[nxt:].strip():
        return None
    root = root_token.removeprefix(".")
    if root not in ROOTS:
        return None
    return root, key


def _parse_suffix(suffix: str) -> list[Segment] | None:
    trimmed = suffix.strip()
    segments: list[Segment] = []
    i = 0
    while i < len(trimmed):
        ch = trimmed[i]
        if ch == ".":
            i += 1
            start = i
            while i < len(trimmed) and (
                trimmed[i].isascii() and (trimmed[i].isalnum() or trimmed[i] in "_-")
            ):
                i += 1
            if start == i:
                return None
            segments.append(trimmed[start:i])
        elif ch == "[":
            if i + 1 >= len(trimmed):
                return None
            if trimmed[i + 1] in "\"'":
                parsed = _parse_quoted_at(trimmed, i + 1)
                if parsed is None:
                    return None
                key, nxt = parsed
                if nxt >= len(trimmed) or trimmed[nxt] != "]":
                    return None
                segments.append(key)
                i = nxt + 1
                continue
            j = i + 1
            while j < len(trimmed) and trimmed[j].isascii() and trimmed[j].isdigit():
                j += 1
            if j == i + 1 or j >= len(trimmed) or trimmed[j] != "]":
                return None
            segments.append(int(trimmed[i + 1 : j]))
            i = j + 1
        else:
            return None
    return segments


def evaluate_index_path(expr: str, variables: dict[str, Any]) -> Any:
    """The fast path for ``(index .steps "name").output.x``; ``_NOT_A_PATH`` otherwise.

    Raises:
        MissingKey, PathError: as ``eval_path``.
    """
    split = _split_index_expression(expr)
    if split is None:
        return _NOT_A_PATH
    call = _parse_index_call(split[0])
    if call is None:
        return _NOT_A_PATH
    segments = _parse_suffix(split[1])
    if segments is None:
        return _NOT_A_PATH
    root, key = call
    return _resolve(root, [key, *segments], variables)


NOT_A_PATH = _NOT_A_PATH

__all__ += ["NOT_A_PATH"]
