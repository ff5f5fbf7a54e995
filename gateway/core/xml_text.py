"""Text that XML 1.0 can carry: the one rule for every string bound for XML or the journal.

XML 1.0 (``Char``) allows TAB, LF, CR, U+0020..U+D7FF, U+E000..U+FFFD and
U+10000..U+10FFFF. Anything else (the other C0 controls, lone surrogates, U+FFFE,
U+FFFF) makes lxml refuse to build the message, and NUL makes PostgreSQL refuse the
row, so the API refuses such strings at the door, naming where they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

#: The characters XML 1.0 cannot carry, as the inside of a regular expression's class.
FORBIDDEN_CLASS: Final = "\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff"
_FORBIDDEN: Final = re.compile(f"[{FORBIDDEN_CLASS}]")


def forbidden_char(text: str) -> str | None:
    """The first character of ``text`` XML 1.0 cannot carry, as ``U+XXXX``; else ``None``."""
    found = _FORBIDDEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def escape_forbidden(text: str) -> str:
    """``text`` with every character XML 1.0 cannot carry written as ``\\uXXXX``: safe
    to echo in an answer or a log line (a lone surrogate cannot even be encoded)."""
    return _FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def find_forbidden(data: Any, path: str = "") -> tuple[str, str] | None:
    """The dotted path (list items as ``[i]``) and character of the first string in the
    JSON-like ``data`` (keys included) that XML 1.0 cannot carry; else ``None``."""
    for where, text in _strings(data, path):
        char = forbidden_char(text)
        if char is not None:
            return where, char
    return None


def _strings(data: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{path}.{escape_forbidden(str(key))}" if path else escape_forbidden(str(key))
            yield name, str(key)
            yield from _strings(value, name)
    elif isinstance(data, list | tuple):
        for index, item in enumerate(data):
            yield from _strings(item, f"{path}[{index}]")
