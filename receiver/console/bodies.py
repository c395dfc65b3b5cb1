"""A stored callback body as an operator reads it: JSON indented, a form one field per
line, text as it came, anything else as a hex dump. Pure: no I/O.

The text is hostile input; the templates escape it (autoescape), so nothing here
needs to. A huge body is cut, saying how much was left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

SHOWN_BYTES = 256 * 1024
HEX_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ShownBody:
    kind: str  # "json", "form", "text", "binary" or "empty"
    text: str
    size: int
    cut: int  # bytes left out of ``text``


def _content_type(headers: dict[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower()
    return ""


def _hex(data: bytes) -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at : at + 16]
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<47}  {printable}")
    return "\n".join(lines)


def show_body(body: bytes, headers: dict[str, str]) -> ShownBody:
    """How to show ``body`` (received with ``headers``)."""
    size = len(body)
    if not body:
        return ShownBody("empty", "", 0, 0)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        shown = body[:HEX_BYTES]
        return ShownBody("binary", _hex(shown), size, size - len(shown))
    if size <= SHOWN_BYTES:
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return ShownBody("json", json.dumps(parsed, indent=2, ensure_ascii=False), size, 0)
        if _content_type(headers) == "application/x-www-form-urlencoded":
            fields = parse_qsl(text, keep_blank_values=True)
            if fields:
                return ShownBody("form", "\n".join(f"{k} = {v}" for k, v in fields), size, 0)
    shown_text = body[:SHOWN_BYTES].decode("utf-8", errors="replace")
    return ShownBody("text", shown_text, size, max(0, size - SHOWN_BYTES))
