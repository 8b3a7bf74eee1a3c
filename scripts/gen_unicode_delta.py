"""Print the code point ranges whose general category differs between Python's Unicode database
and Unicode 15.0.0 (the version of Go's ``unicode`` package the templates are compared with).

Run with ``unicodedata2==15.0.0`` installed (a dev-only tool, not a dependency of bubu):

    pip install unicodedata2==15.0.0 && python scripts/gen_unicode_delta.py

and paste the output into ``bubu/_templating/_unicode.py`` (``_ADDED_IN_15``).
"""

from __future__ import annotations

import unicodedata

import unicodedata2  # type: ignore[import-not-found]


def main() -> None:
    """Print the ranges as Python tuples ``(first, last, category)``."""
    if unicodedata2.unidata_version != "15.0.0":
        raise SystemExit(f"need unicodedata2 15.0.0, found {unicodedata2.unidata_version}")
    ranges: list[list[object]] = []
    for cp in range(0x110000):
        ours, go = unicodedata.category(chr(cp)), unicodedata2.category(chr(cp))
        if ours == go:
            continue
        if ours != "Cn":
            raise SystemExit(
                f"U+{cp:04X}: {ours} -> {go}: not an addition, the table cannot hold it"
            )
        if ranges and ranges[-1][1] == cp - 1 and ranges[-1][2] == go:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp, go])
    print(f"# Unicode {unicodedata.unidata_version} -> 15.0.0: {len(ranges)} ranges")
    for first, last, cat in ranges:
        print(f"    (0x{first:05X}, 0x{last:05X}, {cat!r}),")


if __name__ == "__main__":
    main()
