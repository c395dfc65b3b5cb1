"""A JSON job body whose ``image`` (and a replace job's ``mask``) is base64, split as it
streams in.

``{"provider": "local", "image": "<33 MB of base64>"}`` must not be held in
memory, neither as text nor decoded. :class:`JsonImageSplitter` is fed the body
chunk by chunk; the value of the top-level ``image`` key, when it is long and
not a URL, comes out of :meth:`~JsonImageSplitter.feed` as decoded bytes (for
the caller to write to disk), and the rest of the document is kept with
``null`` in its place, to be parsed as usual once the body is complete. Short
values (and URLs) stay in the document untouched. The ``mask`` key, when asked
for, is split the same way (:meth:`~JsonImageSplitter.feed_parts`). No I/O here.
"""

from __future__ import annotations

import binascii
import re

from schemas.errors import PayloadTooLarge, RejectedInput

# Enough to tell a URL from base64, and to hold a data URI's prefix.
HEAD_CHARS = 256
_DATA_URI = re.compile(rb"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_SCHEME = re.compile(rb"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_WHITESPACE = b" \t\r\n"
_CONTROL = bytes(range(32))
_SIMPLE_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_NOT_BASE64 = "{what} is neither an http(s) URL nor valid base64"
_NOT_JSON = "body must be JSON (or multipart/form-data)"


class Base64Stream:
    """Decodes base64 text fed in pieces (whitespace ignored, as ``decode_base64_image`` does)."""

    def __init__(self, what: str = "image") -> None:
        self._carry = b""
        self._padded = False
        self._not_base64 = _NOT_BASE64.format(what=what)

    def feed(self, text: bytes) -> bytes:
        text = self._carry + text.translate(None, _WHITESPACE)
        usable = len(text) - len(text) % 4
        self._carry = text[usable:]
        return self._decode(text[:usable])

    def close(self) -> bytes:
        text, self._carry = self._carry, b""
        if not text:
            return b""
        return self._decode(text + b"=" * (-len(text) % 4))

    def _decode(self, text: bytes) -> bytes:
        if not text:
            return b""
        if self._padded:  # padding ended the data already
            raise RejectedInput(self._not_base64)
        self._padded = text.endswith(b"=")
        try:  # strict: any character outside the alphabet, or misplaced padding, is an error
            return binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            raise RejectedInput(self._not_base64) from None


class JsonImageSplitter:
    """Feed a JSON body; get the top-level ``image`` decoded, and the rest as a document.

    ``rest_limit`` caps everything but the streamed values (PayloadTooLarge past it).
    Syntax is left to ``json.loads`` of :attr:`rest`, except inside a streamed string.
    ``keys`` are the top-level keys whose values are streamed (``image`` by default).
    """

    def __init__(self, rest_limit: int, keys: tuple[str, ...] = ("image",)) -> None:
        self.rest_limit = rest_limit
        self.keys = frozenset(key.encode() for key in keys)
        self.streamed_keys: set[str] = set()
        self._target = ""  # the key whose value is being collected or streamed
        self._rest = bytearray()
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._expect_key = False
        self._key: bytearray | None = None
        self._last_key = b""
        self._head: bytearray | None = None  # the image value while deciding what it is
        self._decoder: Base64Stream | None = None  # set while streaming the image
        self._pending_escape = b""

    @property
    def rest(self) -> bytes:
        return bytes(self._rest)

    @property
    def streamed(self) -> bool:
        """Whether the image was streamed (and left ``null`` in :attr:`rest`)."""
        return "image" in self.streamed_keys

    def feed(self, chunk: bytes) -> bytes:
        """The image's bytes decoded from ``chunk`` (for a splitter of the image only)."""
        return self.feed_parts(chunk).get("image", b"")

    def feed_parts(self, chunk: bytes) -> dict[str, bytes]:
        """The bytes decoded from ``chunk``, by key (each key present, maybe empty)."""
        outs: dict[str, list[bytes]] = {key.decode(): [] for key in self.keys}
        i, n = 0, len(chunk)
        while i < n:
            if self._decoder is not None:
                i = self._stream(self._decoder, chunk, i, outs[self._target])
            elif self._head is not None:
                i = self._collect_head(self._head, chunk, i, outs[self._target])
            else:
                self._scan(chunk[i])
                i += 1
        return {key: b"".join(parts) for key, parts in outs.items()}

    def close(self) -> bytes:
        if self._decoder is not None or self._head is not None or self._in_string:
            raise RejectedInput(_NOT_JSON)
        return b""

    # outside the image ---------------------------------------------------------------

    def _keep(self, data: bytes) -> None:
        self._rest += data
        if len(self._rest) > self.rest_limit:
            raise PayloadTooLarge(f"the fields around the image are over {self.rest_limit} bytes")

    def _scan(self, byte: int) -> None:
        if self._in_string:
            self._keep(bytes((byte,)))
            if self._escape:
                self._escape = False
            elif byte == 0x5C:  # backslash
                self._escape = True
            elif byte == 0x22:  # end of string
                self._in_string = False
                if self._key is not None:
                    self._last_key, self._key = bytes(self._key), None
                return
            if self._key is not None and len(self._key) <= 16:
                self._key.append(byte)
            return
        if byte == 0x22:
            self._in_string = True
            if self._depth == 1 and self._expect_key:
                self._key = bytearray()
            elif self._depth == 1 and self._last_key in self.keys:
                self._target = self._last_key.decode()
                if self._target in self.streamed_keys:
                    raise RejectedInput(f"{self._target} is given twice")
                self._in_string = False
                self._head = bytearray()
                return
            self._keep(b'"')
            return
        self._keep(bytes((byte,)))
        if byte in b"{[":
            self._depth += 1
            self._expect_key = byte == 0x7B and self._depth == 1
        elif byte in b"}]":
            self._depth -= 1
        elif self._depth == 1 and byte == 0x3A:  # ':'
            self._expect_key = False
        elif self._depth == 1 and byte == 0x2C:  # ','
            self._expect_key = True
            self._last_key = b""

    # the image value -----------------------------------------------------------------

    def _collect_head(self, head: bytearray, chunk: bytes, i: int, out: list[bytes]) -> int:
        """Gather the start of the image value (``head``), then decide: keep it, or stream it."""
        while i < len(chunk) and len(head) < HEAD_CHARS:
            byte = chunk[i]
            i += 1
            if byte == 0x22 and not self._ends_in_escape(head):
                # The whole value is short: it stays in the document as it was.
                self._head = None
                self._keep(b'"' + bytes(head) + b'"')
                self._last_key = b""
                return i
            head.append(byte)
        if len(head) < HEAD_CHARS:
            return i
        text = bytes(head).replace(b"\\/", b"/")
        if _SCHEME.match(text) and text[:5].lower() != b"data:":
            # A (long) URL: left to the usual checks, within the document's cap.
            self._head = None
            self._in_string = True
            self._keep(b'"')
            for byte in head:
                self._scan(byte)
            return i
        self._head = None
        self.streamed_keys.add(self._target)
        self._keep(b"null")
        decoder = self._decoder = Base64Stream(self._target)
        if text[:5].lower() == b"data:":
            prefix = _DATA_URI.match(text)
            if prefix is None:
                raise RejectedInput(_NOT_BASE64.format(what=self._target))
            # The prefix was unescaped for matching; feed the raw bytes after it.
            self._stream(decoder, bytes(head), self._raw_offset(bytes(head), prefix.end()), out)
        else:
            self._stream(decoder, bytes(head), 0, out)
        return i

    @staticmethod
    def _ends_in_escape(raw: bytearray) -> bool:
        backslashes = len(raw) - len(raw.rstrip(b"\\"))
        return backslashes % 2 == 1

    @staticmethod
    def _raw_offset(raw: bytes, unescaped_end: int) -> int:
        """Where, in ``raw``, the first ``unescaped_end`` characters of its ``\\/``-unescaped
        form end."""
        seen = i = 0
        while seen < unescaped_end:
            i += 2 if raw[i : i + 2] == b"\\/" else 1
            seen += 1
        return i

    def _stream(self, decoder: Base64Stream, chunk: bytes, i: int, out: list[bytes]) -> int:
        """Decode the image string from ``chunk[i:]`` up to its closing quote."""
        n = len(chunk)
        while i < n:
            if self._pending_escape:
                self._pending_escape += chunk[i : i + 1]
                i += 1
                escape = self._pending_escape
                if len(escape) == 6 or (len(escape) == 2 and escape[1:2] != b"u"):
                    out.append(decoder.feed(_unescape(escape, self._target)))
                    self._pending_escape = b""
                continue
            quote = chunk.find(b'"', i)
            stop = quote if quote >= 0 else n
            segment = chunk[i:stop]
            if b"\\/" in segment and b"\\\\" not in segment:
                # Some encoders escape every '/': undo that in one pass.
                plain = segment.replace(b"\\/", b"/")
                if b"\\" not in plain:
                    self._feed_span(decoder, plain, out)
                    i = stop
                    if quote >= 0:
                        return self._end_image(decoder, out, i)
                    continue
            backslash = chunk.find(b"\\", i, stop)
            end = backslash if backslash >= 0 else stop
            self._feed_span(decoder, chunk[i:end], out)
            i = end
            if end == backslash:
                self._pending_escape = chunk[i : i + 1]
                i += 1
            elif end == quote:
                return self._end_image(decoder, out, i)
        return i

    @staticmethod
    def _feed_span(decoder: Base64Stream, span: bytes, out: list[bytes]) -> None:
        if len(span.translate(None, _CONTROL)) != len(span):
            raise RejectedInput(_NOT_JSON)
        out.append(decoder.feed(span))

    def _end_image(self, decoder: Base64Stream, out: list[bytes], quote_at: int) -> int:
        out.append(decoder.close())
        self._decoder = None
        self._last_key = b""
        return quote_at + 1


def _unescape(escape: bytes, what: str) -> bytes:
    """The character a JSON escape (``\\/``, ``\\n``, ``\\u002F``...) stands for, in ASCII."""
    if escape[1:2] == b"u":
        try:
            code = int(escape[2:6], 16)
        except ValueError:
            raise RejectedInput(_NOT_JSON) from None
        if code > 0x7F:
            raise RejectedInput(_NOT_BASE64.format(what=what))
        return bytes((code,))
    plain = _SIMPLE_ESCAPES.get(escape[1])
    if plain is None:
        raise RejectedInput(_NOT_JSON)
    return plain
