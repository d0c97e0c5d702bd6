"""How the DLQ tool shows what letters hold: escaped, cut to a bound, parsed with a depth limit.

Every byte shown comes from producers we do not control: a value or header may hold terminal escape
sequences, line breaks, bytes that are not UTF-8, a megabyte of text or JSON nested past any
recursion limit. These helpers turn any of it into one safe, bounded line (or None for "not JSON").
"""

from __future__ import annotations

import json

from pydantic_core import from_json

TEXT_PREVIEW = 2000  # characters of a value that is text but not JSON
VALUE_LINES = 400  # lines of an indented JSON value (and of an error) that show prints at most
LINE_WIDTH = 300  # characters of one such line


def parse_json(value: bytes | None) -> object:
    """The JSON document ``value`` holds, or None when it holds none. pydantic-core's parser, not
    json.loads: it refuses nesting past 200 levels with a ValueError, where json's recursion limit
    (a RecursionError, deep in the C scanner) once ended ``l0-dlq list`` on exactly such a letter."""
    if not value:
        return None
    try:
        return from_json(value)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep: all just "not JSON" here
        return None


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, escapes, line breaks) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_bytes(data: bytes | None, limit: int = 200) -> str:
    """A safe one-line rendering: escaped text when it is UTF-8, else a hex preview of the first bytes."""
    if data is None:
        return "(none)"
    try:
        return shorten(printable(data.decode("utf-8")), limit)
    except UnicodeDecodeError:
        return f"(not UTF-8, {len(data)} bytes) {hex_preview(data, limit // 3)}"


def hex_preview(data: bytes, count: int = 64) -> str:
    """The first ``count`` bytes in hex, "..." when there are more."""
    return data[:count].hex(" ") + (" ..." if len(data) > count else "")


def value_lines(value: bytes | None) -> list[str]:
    """Pretty JSON when the value parses; else an escaped text preview or a hex preview."""
    if value is None:
        return ["value: (none)"]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return [f"value: {len(value)} bytes, not UTF-8; first bytes in hex:", f"  {hex_preview(value)}"]
    doc = parse_json(value)
    if doc is None and text.strip() != "null":
        more = f" (first {TEXT_PREVIEW} characters)" if len(text) > TEXT_PREVIEW else ""
        preview = shorten(printable(text[:TEXT_PREVIEW]), TEXT_PREVIEW)  # escaping can make it longer
        return [f"value: {len(value)} bytes, not JSON{more}:", f"  {preview}"]
    lines = json.dumps(doc, indent=2, ensure_ascii=False).splitlines()
    shown = [shorten(printable(line), LINE_WIDTH) for line in lines[:VALUE_LINES]]
    if len(lines) > VALUE_LINES:
        shown.append(f"... {len(lines) - VALUE_LINES} more lines (l0-dlq shows the first {VALUE_LINES})")
    return [f"value: {len(value)} bytes, JSON:", *shown]
