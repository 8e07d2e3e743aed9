"""Hypothesis strategies shared by the parser fuzz tests: random text, and valid files mutated a little.

A parser passes when it returns a valid result or raises SlamInputError with a one-line message naming
the file; any other exception is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from slam.errors import SlamInputError

# Fast enough for CI on two cores: all the fuzz tests together take about 15 s of CPU.
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Tokens that broke parsers before, or could: non-finite and out-of-range numbers, YAML syntax, odd bytes.
NASTY = [
    "",
    " ",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e999",
    "-1e999",
    "1e-400",
    "0",
    "-0",
    "-1",
    "0.0",
    "99999999999999999999999999999",
    "-99999999999999999999999999999",
    "0x1F",
    "1_000",
    "١٢",
    "1e5",
    "\x00",
    "\t",
    "\r",
    "\x0b",
    "\u2028",
    "é",
    "#",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "- ",
    "&a",
    "*a",
    "!!float x",
    "!!binary x",
    "2001-13-45",
    "2001-02-30 12:00:00",
    "~",
    "null",
    "true",
    "'",
    '"',
    "%YAML 1.1",
    "---",
    "a" * 300,
    "/" * 5,
    "../x.png",
    "[" * 200,
]

_TOKEN = re.compile(r"[^\s,:\[\]{}]+")


def nasty_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), st.text(max_size=12))


@st.composite
def fields_replaced(draw: st.DrawFn, text: str) -> str:
    """`text` with about one token in five (numbers, names, keys) replaced by a nasty one."""
    tokens = list(_TOKEN.finditer(text))
    out, end = [], 0
    for m in tokens:
        if draw(st.integers(0, 4)) == 0:
            out.append(text[end : m.start()] + draw(st.sampled_from(NASTY)))
            end = m.end()
    return "".join(out) + text[end:]


@st.composite
def mutated(draw: st.DrawFn, text: str, max_steps: int = 4) -> str:
    """`text` after 1..max_steps random edits: a token replaced, a slice deleted or inserted, lines
    duplicated or swapped, the end cut off."""
    for _ in range(draw(st.integers(1, max_steps))):
        text = draw(st.sampled_from(_EDITS))(draw, text)
    return text


def _replace_token(draw: st.DrawFn, text: str) -> str:
    tokens = list(_TOKEN.finditer(text))
    if not tokens:
        return text + draw(nasty_text())
    m = draw(st.sampled_from(tokens))
    return text[: m.start()] + draw(nasty_text()) + text[m.end() :]


def _delete(draw: st.DrawFn, text: str) -> str:
    a = draw(st.integers(0, len(text)))
    b = draw(st.integers(a, min(len(text), a + 20)))
    return text[:a] + text[b:]


def _insert(draw: st.DrawFn, text: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(nasty_text()) + text[at:]


def _duplicate_line(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    i = draw(st.integers(0, len(lines) - 1))
    return "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])


def _swap_lines(draw: st.DrawFn, text: str) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        return text
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def _truncate(draw: st.DrawFn, text: str) -> str:
    return text[: draw(st.integers(0, len(text)))]


_EDITS = [_replace_token, _delete, _insert, _duplicate_line, _swap_lines, _truncate]


def text_input(valid: str) -> st.SearchStrategy[str]:
    """Mostly mutations of a valid file, some arbitrary text."""
    return st.one_of(fields_replaced(valid), mutated(valid), mutated(valid, max_steps=12), st.text(max_size=200))


def lines_of(
    tokens: st.SearchStrategy[str], min_fields: int, max_fields: int, sep: str = " "
) -> st.SearchStrategy[str]:
    """Line-structured random input: lines of `min_fields..max_fields` tokens joined by `sep`."""
    line = st.lists(tokens, min_size=min_fields, max_size=max_fields).map(sep.join)
    return st.lists(line, max_size=8).map(lambda lines: "\n".join(lines) + "\n")


def number_token() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**25), 10**25).map(str),
        st.sampled_from(NASTY),
    )


def parse_or_refuse(parse: Callable[[], Any], path: str | Path) -> Any:
    """parse(); None when it refused with a proper SlamInputError (one line, naming `path`)."""
    try:
        return parse()
    except SlamInputError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, repr(message)
        assert str(path) in message, f"{message!r} does not name {path}"
        return None


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return path
