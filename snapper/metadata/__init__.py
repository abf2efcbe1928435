"""Docker metadata read offline from files, one module per source.

Every reader returns ``(rows, errors)``: rows are dicts keyed by the columns of its table in
``snapper.schema``; errors are ``errors`` rows. A corrupt or missing file is an error row, never fatal.
Every value must be storable: text through :func:`clean_text`, integers through :func:`int64`
(``snapper.snapshot.rows_to_batch`` is strict, and a hostile host controls names and file contents).
"""

from __future__ import annotations

from typing import Any

Rows = list[dict[str, Any]]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def clean_text(s: str) -> str:
    """``s`` as text Arrow can store. A name listed as ``str`` holds undecodable bytes as surrogate escapes
    (U+DC80..U+DCFF): they become ``\\xNN``, as ``snapper.walk.show_bytes`` shows them; a lone surrogate
    from a JSON ``\\ud800`` escape becomes ``\\ud800``."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def text_or_none(v: Any) -> str | None:
    """A JSON value that should be a string: the cleaned string, else None."""
    return clean_text(v) if isinstance(v, str) else None


def int64(v: Any) -> int | None:
    """An int (not a bool) that fits a signed 64-bit column, else None."""
    if isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX:
        return v
    return None
