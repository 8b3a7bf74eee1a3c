"""Sprig's ``semver`` and ``semverCompare`` (Masterminds semver v3 rules).

Versions parse loosely (``v1``, ``1.2`` and ``1.2.3-beta+meta``). Constraints support ``=``,
``!=``, ``>``, ``<``, ``>=``, ``<=``, ``~``, ``^``, ``x``/``*`` wildcards, hyphen ranges, comma
(and) and ``||`` (or); a prerelease version only satisfies a constraint that names a
prerelease, as in Masterminds.
"""

from __future__ import annotations

import re

from bubu._templating._values import GoVersion

__all__ = ["compare", "parse"]

_VERSION = re.compile(
    r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$"
)


def _error(message: str) -> Exception:
    from bubu._templating._funcs import GoCallError

    return GoCallError(message)


def parse(text: str) -> GoVersion:
    """``semver.NewVersion``.

    Raises:
        GoCallError: ``invalid semantic version``.
    """
    m = _VERSION.match(text)
    if m is None:
        raise _error("invalid semantic version")
    major = int(m.group(1))
    minor = int(m.group(2)[1:]) if m.group(2) else 0
    patch = int(m.group(3)[1:]) if m.group(3) else 0
    pre = m.group(5) or ""
    for part in pre.split(".") if pre else ():
        if part.isdigit() and len(part) > 1 and part.startswith("0"):
            raise _error("version segment starts with 0")
    return GoVersion(major, minor, patch, pre, m.group(8) or "", text)


def _pre_key(pre: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))


def _cmp(a: GoVersion, b: GoVersion) -> int:
    left = (a.major, a.minor, a.patch)
    right = (b.major, b.minor, b.patch)
    if left != right:
        return -1 if left < right else 1
    if a.pre == b.pre:
        return 0
    if not a.pre:
        return 1
    if not b.pre:
        return -1
    ka, kb = _pre_key(a.pre), _pre_key(b.pre)
    if ka == kb:
        return 0
    return -1 if ka < kb else 1


_CONSTRAINT = re.compile(
    r"^\s*(!=|>=|=>|<=|=<|>|<|=|~>|~|\^)?\s*v?(x|X|\*|[0-9]+)(\.(x|X|\*|[0-9]+))?(\.(x|X|\*|[0-9]+))?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?(\+([0-9A-Za-z\-.]+))?\s*$"
)


def _check(op: str, spec: str, v: GoVersion) -> bool:
    m = _CONSTRAINT.match(op + spec)
    if m is None:
        raise _error(f"improper constraint: {op}{spec}")
    op = m.group(1) or "="
    parts = [m.group(2), m.group(4), m.group(6)]
    wild = [p is None or p in ("x", "X", "*") for p in parts]
    nums = [0 if w else int(p) for p, w in zip(parts, wild, strict=True)]
    pre = m.group(8) or ""
    c = GoVersion(nums[0], nums[1], nums[2], pre, "", spec)
    if v.pre and not pre:
        return False
    if op == "=>":
        op = ">="
    if op == "=<":
        op = "<="
    if op == "~>":
        op = "~"
    if op == "=":
        if wild[0]:
            return True
        if wild[1]:
            return v.major == c.major
        if wild[2]:
            return v.major == c.major and v.minor == c.minor
        return _cmp(v, c) == 0
    if op == "!=":
        if wild[0]:
            return False
        if wild[1]:
            return v.major != c.major
        if wild[2]:
            return not (v.major == c.major and v.minor == c.minor)
        return _cmp(v, c) != 0
    if op == ">":
        if wild[1]:
            return v.major > c.major
        if wild[2]:
            return (v.major, v.minor) > (c.major, c.minor)
        return _cmp(v, c) > 0
    if op == ">=":
        return _cmp(v, c) >= 0
    if op == "<":
        return _cmp(v, c) < 0
    if op == "<=":
        if wild[1]:
            return v.major <= c.major
        if wild[2]:
            return (v.major, v.minor) <= (c.major, c.minor)
        return _cmp(v, c) <= 0
    if op == "~":
        if _cmp(v, c) < 0:
            return False
        if wild[1] and not wild[0]:
            return v.major == c.major
        return v.major == c.major and v.minor == c.minor
    # caret
    if _cmp(v, c) < 0:
        return False
    if c.major > 0 or wild[1]:
        return v.major == c.major
    if c.minor > 0 or wild[2]:
        return v.major == 0 and v.minor == c.minor
    return v.major == 0 and v.minor == 0 and v.patch == c.patch


def compare(constraint: str, version: str) -> bool:
    """``semverCompare``: does ``version`` satisfy ``constraint``?

    Raises:
        GoCallError: an invalid constraint or version.
    """
    v = parse(version)
    for alternative in re.split(r"\s*\|\|\s*", constraint.strip()):
        ok = True
        text = alternative
        hyphen = re.match(r"^\s*(\S+)\s+-\s+(\S+)\s*$", text)
        terms = [f">={hyphen.group(1)}", f"<={hyphen.group(2)}"] if hyphen else None
        if terms is None:
            terms = [t for t in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", text) if t.strip()]
        for term in terms:
            if not _check("", term.strip(), v):
                ok = False
                break
        if ok:
            return True
    return False
