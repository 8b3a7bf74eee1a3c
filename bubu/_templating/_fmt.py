"""Go's ``fmt`` printing for template output: ``%v``, ``print``/``println`` and ``printf``.

The rules are Go's (docs/templates.md "Printing"): ``Sprint`` separates operands with a space
only when neither side is a string; floats print with ``strconv`` ``'g'`` shortest, so
``1e6`` is ``1e+06``; maps print ``map[k:v ...]`` with sorted keys; a verb that does not fit its
operand prints ``%!d(string=x)``; missing and extra operands print ``%!d(MISSING)`` and
``%!(EXTRA ...)``. ``%p`` (addresses) is refused: it would make output non-deterministic.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from bubu._templating import _unicode
from bubu._templating._values import (
    NOVALUE,
    GoStringMap,
    GoStrings,
    GoTime,
    GoVersion,
    go_type,
    is_int,
)

__all__ = ["FormatError", "format_float", "go_quote", "sprint", "sprintf", "sprintln"]


class FormatError(ValueError):
    """A verb bubu does not print (``%p``, hex floats); the evaluator names it."""


# --- strconv -----------------------------------------------------------------------------------


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits and the decimal point position (``0.d1d2... x 10^dp``)."""
    _, digits, exponent = Decimal(repr(abs(f))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0") or "0"
    if text == "0":
        return "0", 1
    return text, len(text) + exponent


def _rounded_digits(f: float, sig: int) -> tuple[str, int]:
    """``sig`` significant digits, correctly rounded (as strconv), and the point position."""
    text = format(abs(f), f".{max(sig - 1, 0)}e")
    mant, _, exp = text.partition("e")
    digits = mant.replace(".", "")
    if digits.strip("0") == "":
        return "0" * sig, 1
    return digits, int(exp) + 1


def _fmt_e(digits: str, dp: int, prec: int, upper: bool) -> str:
    first = digits[0]
    rest = digits[1:]
    if prec >= 0:
        rest = (rest + "0" * prec)[:prec]
    mant = first + ("." + rest if rest else "")
    exp = dp - 1 if digits.strip("0") else 0
    sign = "-" if exp < 0 else "+"
    return f"{mant}{'E' if upper else 'e'}{sign}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int, prec: int) -> str:
    if dp <= 0:
        whole = "0"
        frac = "0" * (-dp) + digits
    elif dp >= len(digits):
        whole = digits + "0" * (dp - len(digits))
        frac = ""
    else:
        whole, frac = digits[:dp], digits[dp:]
    whole = whole.lstrip("0") or "0"
    if prec >= 0:
        frac = (frac + "0" * prec)[:prec]
    return whole + ("." + frac if frac else "")


def format_float(f: float, fmt: str, prec: int) -> str:
    """Go's ``strconv.FormatFloat(f, fmt, prec, 64)`` for ``fmt`` in ``e E f g G``.

    Raises:
        FormatError: for the ``b``, ``x`` and ``X`` formats.
    """
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    neg = "-" if math.copysign(1.0, f) < 0 else ""
    shortest = prec < 0
    if fmt in "eE":
        if shortest:
            digits, dp = _shortest_digits(f)
            return neg + _fmt_e(digits, dp, len(digits) - 1, fmt == "E")
        digits, dp = _rounded_digits(f, prec + 1)
        return neg + _fmt_e(digits, dp, prec, fmt == "E")
    if fmt == "f":
        if shortest:
            digits, dp = _shortest_digits(f)
            return neg + _fmt_f(digits, dp, max(len(digits) - dp, 0))
        text = format(abs(f), f".{prec}f")
        return neg + text
    if fmt in "gG":
        if shortest:
            digits, dp = _shortest_digits(f)
            eprec = 6
        else:
            if prec == 0:
                prec = 1
            digits, dp = _rounded_digits(f, prec)
            digits = digits.rstrip("0") or "0"
            eprec = prec
            if eprec > len(digits) and len(digits) >= dp:
                eprec = len(digits)
        exp = dp - 1 if digits != "0" else 0
        if exp < -4 or exp >= eprec:
            return neg + _fmt_e(digits, dp, len(digits) - 1, fmt == "G")
        return neg + _fmt_f(digits, dp if digits != "0" else 1, max(len(digits) - dp, 0))
    if fmt in "xX":
        return neg + _fmt_x(abs(f), prec, fmt == "X")
    if fmt == "b":
        return neg + _fmt_b(abs(f))
    raise FormatError(f"float format {fmt!r} is not supported")


def _fmt_x(f: float, prec: int, upper: bool) -> str:
    """strconv's ``'x'`` format: ``0x1.8p+01`` (shortest mantissa, two-digit exponent)."""
    if f == 0:
        mant, exp = 0, 0
    else:
        m, e = math.frexp(f)  # f = m * 2**e, 0.5 <= m < 1
        mant = int(m * (1 << 53))  # 53-bit integer mantissa, top bit set
        exp = e - 1
    # mant has 53 bits: 1 leading bit + 52 fraction bits (13 hex digits).
    frac = mant & ((1 << 52) - 1) if mant else 0
    lead = 1 if mant else 0
    digits = f"{frac:013x}"
    if prec >= 0:
        if prec < 13:
            shift = (13 - prec) * 4
            value = (lead << 52) | frac
            half = 1 << (shift - 1)
            rem = value & ((1 << shift) - 1)
            value >>= shift
            if rem > half or (rem == half and value & 1):
                value += 1
            if value >> (prec * 4) > 1:  # carried into a new leading digit
                value >>= 1
                exp += 1
            lead = value >> (prec * 4)
            digits = f"{value & ((1 << (prec * 4)) - 1):0{prec}x}" if prec else ""
        else:
            digits = digits + "0" * (prec - 13)
    else:
        digits = digits.rstrip("0")
    text = (
        f"0x{lead}"
        + (f".{digits}" if digits else "")
        + f"p{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    )
    return text.upper() if upper else text


def _fmt_b(f: float) -> str:
    if f == 0:
        return "0p-1074"
    m, e = math.frexp(f)
    mant = int(m * (1 << 53))
    exp = e - 53
    if exp < -1074:  # subnormal: Go keeps the exponent at -1074
        mant >>= -1074 - exp
        exp = -1074
    return f"{mant}p{'+' if exp >= 0 else '-'}{abs(exp)}"


_QUOTE_ESC = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
_QUOTE_ESC["\v"] = r"\v"


def _is_print(ch: str) -> bool:
    # unicode.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space.
    if ch == " ":
        return True
    return _unicode.category(ch)[0] in "LMNPS"


def go_quote(s: str, *, ascii_only: bool = False, quote: str = '"') -> str:
    """Go's ``strconv.Quote`` (``QuoteToASCII`` with ``ascii_only``, ``QuoteRune`` with ``'``)."""
    out = [quote]
    for ch in s:
        code = ord(ch)
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif ch in _QUOTE_ESC:
            out.append(_QUOTE_ESC[ch])
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd" if ascii_only else "\ufffd")
        elif (code < 0x80 or not ascii_only) and _is_print(ch):
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


def _can_backquote(s: str) -> bool:
    return all(ch == "\t" or (ch >= " " and ch not in "`\x7f\ufeff") for ch in s)


# --- the printer -------------------------------------------------------------------------------


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_float(value: Any) -> bool:
    return (isinstance(value, float) or type(value) is int) and not isinstance(value, bool)


def _is_goint(value: Any) -> bool:
    return is_int(value)


_GO_MONTHS = [
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


def time_string(t: GoTime) -> str:
    """``time.Time.String()``: ``2006-01-02 15:04:05.999999999 -0700 MST``."""
    dt = t.dt
    text = f"{dt.year:04d}-" + dt.strftime("%m-%d %H:%M:%S")
    if t.nanos:
        text += "." + f"{t.nanos:09d}".rstrip("0")
    offset = dt.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    sign = "-" if seconds < 0 else "+"
    hh, mm = divmod(abs(seconds) // 60, 60)
    zone = dt.tzname() or ""
    if zone in ("", "UTC+00:00") or zone.startswith("UTC"):
        zone = "UTC" if seconds == 0 else f"{sign}{hh:02d}{mm:02d}"
    return f"{text} {sign}{hh:02d}{mm:02d} {zone}"


class _Printer:
    __slots__ = (
        "buf",
        "minus",
        "plus",
        "plus_v",
        "prec",
        "prec_present",
        "sharp",
        "sharp_v",
        "space",
        "wid",
        "wid_present",
        "zero",
    )

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.clear()

    def clear(self) -> None:
        self.minus = self.plus = self.sharp = self.space = self.zero = False
        self.plus_v = self.sharp_v = False
        self.wid = self.prec = 0
        self.wid_present = self.prec_present = False

    # padding ------------------------------------------------------------------------------------

    def padding(self, n: int) -> None:
        if n > 0:
            self.buf.append(("0" if self.zero and not self.minus else " ") * n)

    def pad(self, s: str) -> None:
        if not self.wid_present or self.wid == 0:
            self.buf.append(s)
            return
        width = self.wid - len(s)
        if self.minus:
            self.buf.append(s)
            self.padding(width)
        else:
            self.padding(width)
            self.buf.append(s)

    # basic kinds --------------------------------------------------------------------------------

    def fmt_bool(self, v: bool, verb: str) -> None:
        if verb in "tv":
            self.pad("true" if v else "false")
        else:
            self.bad_verb(verb, v)

    def fmt_integer(self, v: int, verb: str, original: Any = None) -> None:
        if verb in "vd":
            self.fmt_int_base(v, 10, verb, "0123456789abcdefx")
        elif verb == "b":
            self.fmt_int_base(v, 2, verb, "0123456789abcdefx")
        elif verb in "oO":
            self.fmt_int_base(v, 8, verb, "0123456789abcdefx")
        elif verb == "x":
            self.fmt_int_base(v, 16, verb, "0123456789abcdefx")
        elif verb == "X":
            self.fmt_int_base(v, 16, verb, "0123456789ABCDEFX")
        elif verb == "c":
            self.pad(chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd")
        elif verb == "q":
            ch = chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"
            self.pad(go_quote(ch, ascii_only=self.plus, quote="'"))
        elif verb == "U":
            self.fmt_unicode(v)
        else:
            self.bad_verb(verb, v if original is None else original)

    def fmt_int_base(self, v: int, base: int, verb: str, digits: str) -> None:
        negative = v < 0
        u = -v if negative else v
        prec = 0
        if self.prec_present:
            prec = self.prec
            if prec == 0 and u == 0:
                zero = self.zero
                self.zero = False
                self.padding(self.wid)
                self.zero = zero
                return
        elif self.zero and not self.minus and self.wid_present:
            prec = self.wid
            if negative or self.plus or self.space:
                prec -= 1
        if base == 10:
            body = str(u)
        elif base == 16:
            body = format(u, "x")
            if digits[10] == "A":
                body = body.upper()
        elif base == 8:
            body = format(u, "o")
        else:
            body = format(u, "b")
        if len(body) < prec:
            body = "0" * (prec - len(body)) + body
        if self.sharp:
            if base == 2:
                body = "0b" + body
            elif base == 8 and not body.startswith("0"):
                body = "0" + body
            elif base == 16:
                body = "0" + digits[16] + body
        if verb == "O":
            body = "0o" + body
        if negative:
            body = "-" + body
        elif self.plus:
            body = "+" + body
        elif self.space:
            body = " " + body
        zero = self.zero
        self.zero = False
        self.pad(body)
        self.zero = zero

    def fmt_unicode(self, u: int) -> None:
        prec = 4
        if self.prec_present and self.prec > 4:
            prec = self.prec
        text = "U+" + format(u, "X").rjust(prec, "0")
        if self.sharp and 0 <= u <= 0x10FFFF and _is_print(chr(u)):
            text += f" '{chr(u)}'"
        zero = self.zero
        self.zero = False
        self.pad(text)
        self.zero = zero

    def fmt_float(self, v: float, verb: str) -> None:
        if verb == "v":
            self.float_as(v, "g", -1)
        elif verb in "gG":
            self.float_as(v, verb, -1)
        elif verb in "feE":
            self.float_as(v, verb, 6)
        elif verb == "F":
            self.float_as(v, "f", 6)
        elif verb in "bxX":
            self.float_as(v, verb, -1)
        else:
            self.bad_verb(verb, v)

    def float_as(self, v: float, verb: str, prec: int) -> None:
        if self.prec_present:
            prec = self.prec
        num = format_float(v, verb, prec)
        if num[0] not in "+-":
            num = "+" + num
        if self.space and num[0] == "+" and not self.plus:
            num = " " + num[1:]
        if num[1] in "IN":
            zero = self.zero
            self.zero = False
            if num[1] == "N" and not self.space and not self.plus:
                num = num[1:]
            self.pad(num)
            self.zero = zero
            return
        if self.sharp:
            num = self._sharp_float(num, verb, prec)
        if self.plus or num[0] != "+":
            if self.zero and not self.minus and self.wid_present and self.wid > len(num):
                self.buf.append(num[0])
                self.buf.append("0" * (self.wid - len(num)))
                self.buf.append(num[1:])
                return
            self.pad(num)
            return
        self.pad(num[1:])

    @staticmethod
    def _sharp_float(num: str, verb: str, prec: int) -> str:
        digits = (6 if prec == -1 else prec) if verb in "vgG" else 0
        tail = ""
        body = num
        for i, ch in enumerate(num[1:], start=1):
            if ch in "eE":
                tail = num[i:]
                body = num[:i]
                break
        has_point = "." in body
        seen = False
        for ch in body[1:]:
            if ch == ".":
                continue
            if ch != "0":
                seen = True
            if seen:
                digits -= 1
        if not has_point:
            if len(body) == 2 and body[1] == "0":
                digits -= 1
            body += "."
        if digits > 0:
            body += "0" * digits
        return body + tail

    def fmt_string(self, v: str, verb: str) -> None:
        if verb == "v":
            if self.sharp_v:
                self.fmt_q(v)
            else:
                self.fmt_s(v)
        elif verb == "s":
            self.fmt_s(v)
        elif verb == "x":
            self.fmt_sx(v, "0123456789abcdefx")
        elif verb == "X":
            self.fmt_sx(v, "0123456789ABCDEFX")
        elif verb == "q":
            self.fmt_q(v)
        else:
            self.bad_verb(verb, v)

    def truncate(self, s: str) -> str:
        if self.prec_present and self.prec < len(s):
            return s[: self.prec]
        return s

    def fmt_s(self, s: str) -> None:
        self.pad(self.truncate(s))

    def fmt_sx(self, s: str, digits: str) -> None:
        data = s.encode("utf-8", "surrogatepass")
        length = len(data)
        if self.prec_present and self.prec < length:
            length = self.prec
        width = 2 * length
        if width > 0:
            if self.space:
                if self.sharp:
                    width *= 2
                width += length - 1
            elif self.sharp:
                width += 2
        else:
            if self.wid_present:
                self.padding(self.wid)
            return
        if self.wid_present and self.wid > width and not self.minus:
            self.padding(self.wid - width)
        parts: list[str] = []
        if self.sharp:
            parts.append("0" + digits[16])
        for i in range(length):
            if self.space and i > 0:
                parts.append(" ")
                if self.sharp:
                    parts.append("0" + digits[16])
            c = data[i]
            parts.append(digits[c >> 4] + digits[c & 0xF])
        self.buf.append("".join(parts))
        if self.wid_present and self.wid > width and self.minus:
            self.padding(self.wid - width)

    def fmt_q(self, s: str) -> None:
        s = self.truncate(s)
        if self.sharp and _can_backquote(s):
            self.pad("`" + s + "`")
            return
        self.pad(go_quote(s, ascii_only=self.plus))

    # composite values ---------------------------------------------------------------------------

    def bad_verb(self, verb: str, value: Any) -> None:
        self.buf.append("%!" + verb + "(")
        if value is None or value is NOVALUE:
            self.buf.append("<nil>")
        else:
            self.buf.append(go_type(value) + "=")
            saved = (self.sharp_v, self.plus_v)
            self.print_arg(value, "v")
            self.sharp_v, self.plus_v = saved
        self.buf.append(")")

    def print_arg(self, arg: Any, verb: str, depth: int = 0) -> None:
        if arg is None or arg is NOVALUE:
            if depth > 0:
                self.buf.append("interface {}(nil)" if self.sharp_v else "<nil>")
            elif verb in "Tv":
                self.pad("<nil>")
            else:
                self.bad_verb(verb, None)
            return
        if verb == "T":
            self.fmt_s(go_type(arg))
            return
        if verb == "p":
            raise FormatError("printf verb %p (a memory address) is not supported")
        if isinstance(arg, bool):
            self.fmt_bool(arg, verb)
        elif _is_goint(arg):
            if verb == "v" and self.sharp_v:
                self.fmt_int_base(int(arg), 10, "d", "0123456789abcdefx")
            else:
                self.fmt_integer(int(arg), verb, arg)
        elif _is_float(arg):
            value = float(arg)
            if self.sharp_v and verb == "v":
                self.float_as(value, "g", -1)
            else:
                self.fmt_float(value, verb)
        elif isinstance(arg, str):
            self.fmt_string(arg, verb)
        elif isinstance(arg, GoTime):
            if self.sharp_v:
                raise FormatError("printf %#v of a time value is not supported")
            if verb in "vsxXq":
                self.fmt_string(time_string(arg), verb)
            else:
                self.buf.append("{...}")
        elif isinstance(arg, GoVersion):
            if verb in "vsxXq" and not self.sharp_v:
                self.fmt_string(str(arg), verb)
            else:
                raise FormatError(f"printf %{verb} of a semver value is not supported")
        elif isinstance(arg, dict):
            self.print_map(arg, verb, depth)
        elif isinstance(arg, list | tuple):
            self.print_list(arg, verb, depth)
        else:
            raise FormatError(f"cannot print a {type(arg).__name__}")

    def print_map(self, value: dict[Any, Any], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.buf.append(go_type(value) + "{")
        else:
            self.buf.append("map[")
        for i, key in enumerate(sorted(value)):
            if i > 0:
                self.buf.append(", " if self.sharp_v else " ")
            self.print_arg(key, verb, depth + 1)
            self.buf.append(":")
            item = value[key]
            if type(value) is GoStringMap:
                self.print_arg(item, verb, depth + 1)
            else:
                self.print_elem(item, verb, depth + 1)
        self.buf.append("}" if self.sharp_v else "]")

    def print_list(self, value: list[Any] | tuple[Any, ...], verb: str, depth: int) -> None:
        if self.sharp_v:
            self.buf.append(go_type(value) + "{")
            for i, item in enumerate(value):
                if i > 0:
                    self.buf.append(", ")
                self.print_elem(item, verb, depth + 1)
            self.buf.append("}")
            return
        self.buf.append("[")
        for i, item in enumerate(value):
            if i > 0:
                self.buf.append(" ")
            if type(value) is GoStrings:
                self.print_arg(item, verb, depth + 1)
            else:
                self.print_elem(item, verb, depth + 1)
        self.buf.append("]")

    def print_elem(self, item: Any, verb: str, depth: int) -> None:
        # An element of []interface{} / map[string]interface{}: nil prints without a verb check.
        if item is None:
            self.buf.append("interface {}(nil)" if self.sharp_v else "<nil>")
        else:
            self.print_arg(item, verb, depth)


def sprint(*args: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither is a string."""
    p = _Printer()
    prev_string = False
    for i, arg in enumerate(args):
        is_string = _is_string(arg)
        if i > 0 and not is_string and not prev_string:
            p.buf.append(" ")
        p.print_arg(arg, "v")
        prev_string = is_string
    return "".join(p.buf)


def sprintln(*args: Any) -> str:
    """Go's ``fmt.Sprintln``: operands separated by spaces, then a newline."""
    p = _Printer()
    for i, arg in enumerate(args):
        if i > 0:
            p.buf.append(" ")
        p.print_arg(arg, "v")
    p.buf.append("\n")
    return "".join(p.buf)


def _parse_num(s: str, start: int, end: int) -> tuple[int, bool, int]:
    if start >= end:
        return 0, False, end
    num = 0
    i = start
    found = False
    while i < end and "0" <= s[i] <= "9":
        if num > 1_000_000:  # Go's tooLarge guard
            return 0, False, end
        num = num * 10 + ord(s[i]) - 48
        found = True
        i += 1
    return num, found, i


def _int_from_arg(args: tuple[Any, ...], arg_num: int) -> tuple[int, bool, int]:
    if arg_num >= len(args):
        return 0, False, arg_num
    value = args[arg_num]
    if _is_goint(value) and -1_000_000 <= int(value) <= 1_000_000:
        return int(value), True, arg_num + 1
    return 0, False, arg_num + 1


def sprintf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf``, including its in-band error notation.

    Raises:
        FormatError: ``%p`` or a hex float verb.
    """
    p = _Printer()
    end = len(fmt)
    arg_num = 0
    after_index = False
    reordered = False
    i = 0
    while i < end:
        good_arg_num = True
        lasti = i
        while i < end and fmt[i] != "%":
            i += 1
        if i > lasti:
            p.buf.append(fmt[lasti:i])
        if i >= end:
            break
        i += 1
        p.clear()
        simple = False
        while i < end:
            c = fmt[i]
            if c == "#":
                p.sharp = True
            elif c == "0":
                p.zero = True
            elif c == "+":
                p.plus = True
            elif c == "-":
                p.minus = True
            elif c == " ":
                p.space = True
            else:
                if "a" <= c <= "z" and arg_num < len(args):
                    if c == "v":
                        p.sharp_v, p.sharp = p.sharp, False
                        p.plus_v, p.plus = p.plus, False
                    p.print_arg(args[arg_num], c)
                    arg_num += 1
                    i += 1
                    simple = True
                break
            i += 1
        if simple:
            continue

        def arg_number(n: int, pos: int) -> tuple[int, int, bool]:
            nonlocal reordered, good_arg_num
            if pos >= end or fmt[pos] != "[":
                return n, pos, False
            reordered = True
            close = fmt.find("]", pos + 1)
            if close < 0 or end - pos < 3:
                good_arg_num = False
                return n, pos + 1, False
            num, ok, newi = _parse_num(fmt, pos + 1, close)
            if not ok or newi != close:
                good_arg_num = False
                return n, close + 1, False
            index = num - 1
            if 0 <= index < len(args):
                return index, close + 1, True
            good_arg_num = False
            return n, close + 1, True

        arg_num, i, after_index = arg_number(arg_num, i)
        if i < end and fmt[i] == "*":
            i += 1
            p.wid, p.wid_present, arg_num = _int_from_arg(args, arg_num)
            if not p.wid_present:
                p.buf.append("%!(BADWIDTH)")
            if p.wid < 0:
                p.wid = -p.wid
                p.minus = True
                p.zero = False
            after_index = False
        else:
            p.wid, p.wid_present, i = _parse_num(fmt, i, end)
            if after_index and p.wid_present:
                good_arg_num = False
        if i + 1 < end and fmt[i] == ".":
            i += 1
            if after_index:
                good_arg_num = False
            arg_num, i, after_index = arg_number(arg_num, i)
            if i < end and fmt[i] == "*":
                i += 1
                p.prec, p.prec_present, arg_num = _int_from_arg(args, arg_num)
                if p.prec < 0:
                    p.prec = 0
                    p.prec_present = False
                if not p.prec_present:
                    p.buf.append("%!(BADPREC)")
                after_index = False
            else:
                p.prec, p.prec_present, i = _parse_num(fmt, i, end)
                if not p.prec_present:
                    p.prec = 0
                    p.prec_present = True
        if not after_index:
            arg_num, i, after_index = arg_number(arg_num, i)
        if i >= end:
            p.buf.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            p.buf.append("%")
        elif not good_arg_num:
            p.buf.append(f"%!{verb}(BADINDEX)")
        elif arg_num >= len(args):
            p.buf.append(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                p.sharp_v, p.sharp = p.sharp, False
                p.plus_v, p.plus = p.plus, False
            p.print_arg(args[arg_num], verb)
            arg_num += 1
    if not reordered and arg_num < len(args):
        p.clear()
        p.buf.append("%!(EXTRA ")
        for n, arg in enumerate(args[arg_num:]):
            if n > 0:
                p.buf.append(", ")
            if arg is None or arg is NOVALUE:
                p.buf.append("<nil>")
            else:
                p.buf.append(go_type(arg) + "=")
                p.print_arg(arg, "v")
        p.buf.append(")")
    return "".join(p.buf)
