"""Sprig's date helpers, Go time layouts and ``time.Time`` methods for templates.

Layouts are Go's reference-time layouts (``2006-01-02T15:04:05Z07:00``). ``now`` and the random
helpers exist only when evaluation is non-deterministic (not for trigger keys,
docs/templates.md#templates). "Local" is the process time zone, as in Go.
"""

from __future__ import annotations

import random
import re
import secrets
import string
import time as _time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bubu._templating._values import GoInt, GoInt64, GoTime

if TYPE_CHECKING:
    from bubu._templating._funcs import GoFunc

__all__ = ["format_layout", "go_duration", "sprig_dates", "time_method"]

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

_TOKENS = [
    "January",
    "Monday",
    "Jan",
    "Mon",
    "MST",
    "2006",
    "-07:00:00",
    "-0700",
    "-07:00",
    "-07",
    "Z07:00:00",
    "Z0700",
    "Z07:00",
    "Z07",
    "01",
    "02",
    "_2",
    "002",
    "__2",
    "15",
    "03",
    "04",
    "05",
    "06",
    "PM",
    "pm",
    "1",
    "2",
    "3",
    "4",
    "5",
]
_FRAC = re.compile(r"[.,](0+|9+)(?!\d)")


def _local_zone() -> Any:
    return datetime.now().astimezone().tzinfo


def _zone_name(dt: datetime) -> str:
    name = dt.tzname() or ""
    offset = dt.utcoffset() or timedelta(0)
    if name.startswith(("UTC+", "UTC-")) or (name == "UTC" and offset):
        seconds = int(offset.total_seconds())
        sign = "-" if seconds < 0 else "+"
        hh, rem = divmod(abs(seconds), 3600)
        return f"{sign}{hh:02d}" + (f"{rem // 60:02d}" if rem else "")
    return name or "UTC"


def format_layout(t: GoTime, layout: str) -> str:
    """``time.Time.Format(layout)``."""
    dt = t.dt
    out: list[str] = []
    i = 0
    offset = dt.utcoffset() or timedelta(0)
    off = int(offset.total_seconds())
    while i < len(layout):
        m = _FRAC.match(layout, i)
        if m:
            digits = len(m.group(1))
            frac = f"{t.nanos:09d}"[:digits]
            if m.group(1)[0] == "9":
                frac = frac.rstrip("0")
                out.append(layout[i] + frac if frac else "")
            else:
                out.append(layout[i] + frac)
            i = m.end()
            continue
        for tok in _TOKENS:
            if layout.startswith(tok, i):
                out.append(_render(tok, dt, off))
                i += len(tok)
                break
        else:
            out.append(layout[i])
            i += 1
    return "".join(out)


def _offset_text(off: int, tok: str) -> str:
    z = tok.startswith("Z")
    if z and off == 0:
        return "Z"
    sign = "-" if off < 0 else "+"
    hh, rem = divmod(abs(off), 3600)
    mm, ss = divmod(rem, 60)
    body = tok.lstrip("Z-")
    if body == "07":
        return f"{sign}{hh:02d}"
    if body == "0700":
        return f"{sign}{hh:02d}{mm:02d}"
    if body == "07:00":
        return f"{sign}{hh:02d}:{mm:02d}"
    return f"{sign}{hh:02d}:{mm:02d}:{ss:02d}"


def _render(tok: str, dt: datetime, off: int) -> str:
    if tok == "January":
        return _MONTHS[dt.month - 1]
    if tok == "Jan":
        return _MONTHS[dt.month - 1][:3]
    if tok == "Monday":
        return _DAYS[dt.weekday()]
    if tok == "Mon":
        return _DAYS[dt.weekday()][:3]
    if tok == "MST":
        return _zone_name(dt)
    if tok == "2006":
        return f"{dt.year:04d}"
    if tok == "06":
        return f"{dt.year % 100:02d}"
    if tok in ("-07:00:00", "-0700", "-07:00", "-07", "Z07:00:00", "Z0700", "Z07:00", "Z07"):
        return _offset_text(off, tok)
    if tok == "01":
        return f"{dt.month:02d}"
    if tok == "1":
        return str(dt.month)
    if tok == "02":
        return f"{dt.day:02d}"
    if tok == "_2":
        return f"{dt.day:2d}"
    if tok == "2":
        return str(dt.day)
    if tok == "002":
        return f"{dt.timetuple().tm_yday:03d}"
    if tok == "__2":
        return f"{dt.timetuple().tm_yday:3d}"
    if tok == "15":
        return f"{dt.hour:02d}"
    hour12 = dt.hour % 12 or 12
    if tok == "03":
        return f"{hour12:02d}"
    if tok == "3":
        return str(hour12)
    if tok == "04":
        return f"{dt.minute:02d}"
    if tok == "4":
        return str(dt.minute)
    if tok == "05":
        return f"{dt.second:02d}"
    if tok == "5":
        return str(dt.second)
    if tok == "PM":
        return "PM" if dt.hour >= 12 else "AM"
    if tok == "pm":
        return "pm" if dt.hour >= 12 else "am"
    return tok


_PARSE_RE = {
    "2006": r"(?P<Y>\d{4})",
    "06": r"(?P<y>\d{2})",
    "01": r"(?P<m>\d{2})",
    "1": r"(?P<m>\d{1,2})",
    "02": r"(?P<d>\d{2})",
    "_2": r" ?(?P<d>\d{1,2})",
    "2": r"(?P<d>\d{1,2})",
    "15": r"(?P<H>\d{2})",
    "03": r"(?P<I>\d{2})",
    "3": r"(?P<I>\d{1,2})",
    "04": r"(?P<M>\d{2})",
    "4": r"(?P<M>\d{1,2})",
    "05": r"(?P<S>\d{2})",
    "5": r"(?P<S>\d{1,2})",
    "PM": r"(?P<p>AM|PM)",
    "pm": r"(?P<p>am|pm)",
    "Jan": r"(?P<b>[A-Z][a-z]{2})",
    "January": r"(?P<B>[A-Z][a-z]+)",
    "Mon": r"[A-Z][a-z]{2}",
    "Monday": r"[A-Z][a-z]+",
    "MST": r"(?P<Z>[A-Z]{3,4}|[+-]\d{2,4})",
    "-0700": r"(?P<o>[+-]\d{4})",
    "-07:00": r"(?P<o>[+-]\d{2}:\d{2})",
    "-07": r"(?P<o>[+-]\d{2})",
    "Z0700": r"(?P<o>Z|[+-]\d{4})",
    "Z07:00": r"(?P<o>Z|[+-]\d{2}:\d{2})",
    "Z07": r"(?P<o>Z|[+-]\d{2})",
}


def parse_layout(layout: str, text: str, loc: Any) -> GoTime | None:
    """``time.ParseInLocation`` for the common layout elements; None when it does not match."""
    pattern: list[str] = []
    i = 0
    while i < len(layout):
        m = _FRAC.match(layout, i)
        if m:
            pattern.append(r"(?:[.,](?P<f>\d+))?" if m.group(1)[0] == "9" else r"[.,](?P<f>\d+)")
            i = m.end()
            continue
        for tok in sorted(_PARSE_RE, key=len, reverse=True):
            if layout.startswith(tok, i):
                pattern.append(_PARSE_RE[tok])
                i += len(tok)
                # Go accepts a fractional second right after the seconds field even when
                # the layout does not show one.
                has_fraction = "(?P<f>" in "".join(pattern) or _FRAC.match(layout, i)
                if tok in ("05", "5") and not has_fraction:
                    pattern.append(r"(?:[.,](?P<f>\d+))?")
                break
        else:
            pattern.append(re.escape(layout[i]))
            i += 1
    try:
        m = re.fullmatch("".join(pattern), text)
    except re.error:
        return None
    if m is None:
        return None
    g = m.groupdict()
    try:
        year = (
            int(g["Y"])
            if g.get("Y")
            else (int(g["y"]) + (1900 if int(g["y"]) >= 69 else 2000) if g.get("y") else 0)
        )
        if g.get("B"):
            month = _MONTHS.index(g["B"]) + 1
        elif g.get("b"):
            month = [m_[:3] for m_ in _MONTHS].index(g["b"]) + 1
        else:
            month = int(g.get("m") or 1)
        day = int(g.get("d") or 1)
        hour = int(g.get("H") or 0)
        if g.get("I"):
            hour = int(g["I"]) % 12 + (12 if (g.get("p") or "").lower() == "pm" else 0)
        minute = int(g.get("M") or 0)
        second = int(g.get("S") or 0)
        frac = (g.get("f") or "")[:9].ljust(9, "0")
        nanos = int(frac)
        tz = loc
        if g.get("o"):
            o = g["o"]
            if o == "Z":
                tz = UTC
            else:
                sign = -1 if o[0] == "-" else 1
                digits = o[1:].replace(":", "")
                hh = int(digits[:2])
                mm = int(digits[2:4] or 0)
                tz = timezone(sign * timedelta(hours=hh, minutes=mm))
        elif g.get("Z") == "UTC":
            tz = UTC
        if year == 0:
            year = 1
        dt = datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=tz)
    except (ValueError, IndexError):
        return None
    return GoTime(dt, nanos)


_ZERO = GoTime(datetime(1, 1, 1, tzinfo=UTC), 0)


def _to_time(value: Any) -> GoTime:
    if isinstance(value, GoTime):
        return value
    if type(value) is GoInt or type(value) is GoInt64:
        return GoTime(datetime.fromtimestamp(int(value), tz=UTC), 0)
    return _now()


def _now() -> GoTime:
    ns = _time.time_ns()
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).replace(
        microsecond=(ns % 1_000_000_000) // 1000
    )
    return GoTime(dt.astimezone(_local_zone()), ns % 1_000_000_000)


def _zone(name: str) -> Any:
    if name == "Local":
        return _local_zone()
    if name in ("", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _in_zone(t: GoTime, tz: Any) -> GoTime:
    return GoTime(t.dt.astimezone(tz), t.nanos)


def date_in_zone(layout: str, date: Any, zone: str) -> str:
    return format_layout(_in_zone(_to_time(date), _zone(zone)), layout)


_UNITS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "μs": 1000,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_DUR_RE = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int | None:
    """``time.ParseDuration`` in nanoseconds; None when invalid."""
    s = text
    neg = False
    if s[:1] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        return None
    total = 0
    pos = 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        total += int(float(m.group(1)) * _UNITS[m.group(2)])
        pos = m.end()
    return -total if neg else total


def go_duration(ns: int) -> str:
    """``time.Duration.String()``."""
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = abs(ns)
    if u < 10**9:
        for unit, scale in (("ns", 1), ("µs", 10**3), ("ms", 10**6)):
            if u < scale * 1000:
                text = _frac(u, scale) + unit
                break
    else:
        secs, rem = divmod(u, 10**9)
        h, secs = divmod(secs, 3600)
        m, secs = divmod(secs, 60)
        text = _frac(secs * 10**9 + rem, 10**9) + "s"
        if h:
            text = f"{h}h{m}m" + text
        elif m:
            text = f"{m}m" + text
    return ("-" if neg else "") + text


def _frac(v: int, scale: int) -> str:
    whole, rem = divmod(v, scale)
    if not rem:
        return str(whole)
    digits = f"{rem:0{len(str(scale)) - 1}d}".rstrip("0")
    return f"{whole}.{digits}"


def _duration(sec: Any) -> str:
    n = 0
    if isinstance(sec, str):
        try:
            n = int(sec) if re.fullmatch(r"[+-]?\d+", sec) else 0
        except ValueError:
            n = 0
    elif type(sec) is GoInt64:
        n = int(sec)
    return go_duration(n * 10**9)


def _duration_round(value: Any) -> str:
    if isinstance(value, str):
        ns = parse_go_duration(value)
        d = ns if ns is not None else 0
    elif isinstance(value, GoTime):
        d = int((datetime.now(UTC) - value.dt).total_seconds() * 10**9)
    elif type(value) is GoInt or type(value) is GoInt64:
        d = int(value)
    else:
        d = 0
    u = abs(d)
    year, month, day, hour, minute, second = (
        31536000 * 10**9,
        2592000 * 10**9,
        86400 * 10**9,
        3600 * 10**9,
        60 * 10**9,
        10**9,
    )
    if u > year:
        return f"{u // year}y"
    if u > month:
        return f"{u // month}mo"
    if u > day:
        return f"{u // day}d"
    if u > hour:
        return f"{u // hour}h"
    if u > minute:
        return f"{u // minute}m"
    if u > second:
        return f"{u // second}s"
    return "0s"


def _date_modify(fmt: str, date: GoTime) -> GoTime:
    ns = parse_go_duration(fmt)
    if ns is None:
        return date
    total = date.nanos + ns
    return GoTime(
        date.dt.replace(microsecond=0) + timedelta(microseconds=total // 1000), total % 10**9
    )


def _must_date_modify(fmt: str, date: GoTime) -> GoTime:
    from bubu._templating._funcs import GoCallError

    if parse_go_duration(fmt) is None:
        raise GoCallError(f'time: invalid duration "{fmt}"')
    return _date_modify(fmt, date)


def _to_date(layout: str, text: str) -> GoTime:
    return parse_layout(layout, text, _local_zone()) or _ZERO


def _must_to_date(layout: str, text: str) -> GoTime:
    from bubu._templating._funcs import GoCallError

    parsed = parse_layout(layout, text, _local_zone())
    if parsed is None:
        raise GoCallError(f'parsing time "{text}" as "{layout}": cannot parse')
    return parsed


def _unix(t: GoTime) -> int:
    return int(t.dt.timestamp()) if t.dt.year > 1 else -62135596800


def time_method(t: GoTime, name: str) -> GoFunc | None:
    """The Go method ``name`` of ``time.Time`` as a GoFunc, or None."""
    from bubu._templating._funcs import GoFunc

    methods: dict[str, GoFunc] = {
        "Unix": GoFunc(lambda: GoInt64(_unix(t))),
        "UnixMilli": GoFunc(lambda: GoInt64(_unix(t) * 1000 + t.nanos // 10**6)),
        "UnixNano": GoFunc(lambda: GoInt64(_unix(t) * 10**9 + t.nanos)),
        "Year": GoFunc(lambda: GoInt(t.dt.year)),
        "Day": GoFunc(lambda: GoInt(t.dt.day)),
        "Hour": GoFunc(lambda: GoInt(t.dt.hour)),
        "Minute": GoFunc(lambda: GoInt(t.dt.minute)),
        "Second": GoFunc(lambda: GoInt(t.dt.second)),
        "Nanosecond": GoFunc(lambda: GoInt(t.nanos)),
        "YearDay": GoFunc(lambda: GoInt(t.dt.timetuple().tm_yday)),
        "Format": GoFunc(lambda layout: format_layout(t, layout), ("string",)),
        "UTC": GoFunc(lambda: _in_zone(t, UTC)),
        "IsZero": GoFunc(lambda: t == _ZERO or (t.dt.year == 1 and _unix(t) == -62135596800)),
        "String": GoFunc(lambda: _string(t)),
    }
    return methods.get(name)


def _string(t: GoTime) -> str:
    from bubu._templating._fmt import time_string

    return time_string(t)


def _rand(alphabet: str) -> Any:
    return lambda n: "".join(secrets.choice(alphabet) for _ in range(max(int(n), 0)))


def sprig_dates(deterministic: bool) -> dict[str, Any]:
    """Sprig's date helpers (and ``now``/random ones unless ``deterministic``)."""
    from bubu._templating._funcs import ANY, GoCallError, GoFunc

    f = GoFunc
    funcs: dict[str, GoFunc] = {
        "date": f(lambda layout, d: date_in_zone(layout, d, "Local"), ("string", ANY)),
        "dateInZone": f(date_in_zone, ("string", ANY, "string")),
        "date_in_zone": f(date_in_zone, ("string", ANY, "string")),
        "dateModify": f(_date_modify, ("string", "time.Time")),
        "date_modify": f(_date_modify, ("string", "time.Time")),
        "mustDateModify": f(_must_date_modify, ("string", "time.Time")),
        "must_date_modify": f(_must_date_modify, ("string", "time.Time")),
        "duration": f(_duration, (ANY,)),
        "durationRound": f(_duration_round, (ANY,)),
        "htmlDate": f(lambda d: date_in_zone("2006-01-02", d, "Local"), (ANY,)),
        "htmlDateInZone": f(lambda d, z: date_in_zone("2006-01-02", d, z), (ANY, "string")),
        "toDate": f(_to_date, ("string", "string")),
        "mustToDate": f(_must_to_date, ("string", "string")),
        "unixEpoch": f(lambda t: str(_unix(t)), ("time.Time",)),
    }
    if not deterministic:

        def rand_int(lo: int, hi: int) -> GoInt:
            if hi - lo <= 0:
                raise GoCallError("invalid argument to Intn")
            return GoInt(random.randrange(hi - lo) + lo)

        funcs.update(
            {
                "now": f(_now),
                "randAlpha": f(_rand(string.ascii_letters), ("int",)),
                "randAlphaNum": f(_rand(string.ascii_letters + string.digits), ("int",)),
                "randAscii": f(_rand("".join(chr(c) for c in range(32, 127))), ("int",)),
                "randNumeric": f(_rand(string.digits), ("int",)),
                "randInt": f(rand_int, ("int", "int")),
                "uuidv4": f(lambda: str(uuid.uuid4())),
            }
        )
    return funcs
