"""The body of ``POST /v1/jobs``: an image upload streamed to disk, never held in memory.

Multipart (an ``image`` file part) and JSON (a base64 ``image``, decoded in
pieces by :mod:`receiver.json_upload`) both end in the same place: the image in
a private part file of the input store's spool (:class:`orchestrator.results.spool.SpoolWriter`),
capped at ``UPSCALE_MAX_UPLOAD_BYTES`` and hashed on the way, and the other
fields as a JSON-like dict for ``parse_create_job``. A replace job's ``mask``
(a second file part, or a second base64 value) is staged the same way, in a part
file of its own under the same cap. The part files live until the ``async with``
block ends: moved into the input store by then, or removed.

A request whose body may be large (no Content-Length, or more than
:data:`SMALL_BODY` bytes) takes one of ``UPSCALE_MAX_CONCURRENT_UPLOADS``
slots while it is received and the job created; with none free the answer is
429 with ``Retry-After``.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from orchestrator.results.spool import SpoolWriter
from orchestrator.service.runtime import Runtime
from receiver.bodies import body_chunks, declared_length
from receiver.json_bodies import parse_json, parse_json_field
from receiver.json_upload import JsonImageSplitter
from schemas.api import StagedImage
from schemas.errors import PayloadTooLarge, RejectedInput, TooManyUploads

# Room for the multipart envelope and the fields around the image; also the size
# under which a body is not counted as an upload.
SMALL_BODY = 64 * 1024
MAX_FIELDS = 16
RETRY_AFTER_S = 2.0
FORM_FIELDS = ("provider", "operation", "scale", "prompt", "options", "metadata", "webhook_url")
FILE_PARTS = ("image", "mask")


@dataclass(frozen=True, slots=True)
class Received:
    """A job request as received: its fields, and its uploads staged to files."""

    payload: Any
    image: StagedImage | None
    mask: StagedImage | None = None
    # A multipart body's text fields as sent (the console's form reads its CSRF token).
    fields: Mapping[str, str] = field(default_factory=dict)


class UploadSlots:
    """How many uploads are being received at once; no waiting, a full house is 429."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.active >= self.limit:
            raise TooManyUploads(
                f"{self.limit} uploads are being received; try again shortly", RETRY_AFTER_S
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


@asynccontextmanager
async def received_job(request: Request, runtime: Runtime) -> AsyncIterator[Received]:
    """The job request's fields, and its uploaded image (and mask) when there is one."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    image_cap = runtime.settings.max_upload_bytes
    # Room for an image and a mask; base64 grows each by a third.
    limit = (2 * image_cap if multipart else 2 * image_cap * 4 // 3) + SMALL_BODY
    declared = declared_length(request, limit)
    slots: UploadSlots = request.app.state.upload_slots
    async with runtime.inputs.spool_writer() as writer, runtime.inputs.spool_writer("mask") as mask:
        writers = {"image": writer, "mask": mask}
        if declared is not None and declared <= SMALL_BODY:
            yield await _read(request, writers, limit, multipart)
        else:
            async with slots.slot():
                yield await _read(request, writers, limit, multipart)


async def _read(
    request: Request, writers: dict[str, SpoolWriter], limit: int, multipart: bool
) -> Received:
    if multipart:
        return await _read_multipart(request, writers, limit)
    return await _read_json_upload(request, writers, limit)


async def _read_json_upload(
    request: Request, writers: dict[str, SpoolWriter], limit: int
) -> Received:
    splitter = JsonImageSplitter(rest_limit=SMALL_BODY, keys=FILE_PARTS)
    async for chunk in body_chunks(request, limit):
        for key, data in splitter.feed_parts(chunk).items():
            await writers[key].write(data)
    splitter.close()
    payload = parse_json(splitter.rest, what="body (JSON, or multipart/form-data)")
    staged = {key: await writers[key].finish() for key in sorted(splitter.streamed_keys)}
    return Received(payload, staged.get("image"), staged.get("mask"))


class _Form:
    """python-multipart's callbacks: small fields kept, the image part's bytes handed on."""

    def __init__(self, charset: str) -> None:
        self.charset = charset
        self.fields: dict[str, str] = {}
        # The file parts' bytes not yet written, by part name, and the parts seen.
        self.file_data: list[tuple[str, bytes]] = []
        self.files: set[str] = set()
        self._field_bytes = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._value = bytearray()
        self._file: str | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._name = None
        self._value = bytearray()
        self._file = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise RejectedInput('every multipart part needs a Content-Disposition "name"')
        self._name = name.decode(self.charset, errors="replace")
        if b"filename" in options:
            if self._name not in FILE_PARTS or self._name in self.files:
                raise RejectedInput(
                    "multipart body takes one file part named 'image'"
                    " (and, for operation replace, one named 'mask')"
                )
            self._file = self._name
            self.files.add(self._name)
        elif len(self.fields) >= MAX_FIELDS:
            raise RejectedInput(f"multipart body has more than {MAX_FIELDS} fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.file_data.append((self._file, data[start:end]))
            return
        self._field_bytes += end - start
        if self._field_bytes > SMALL_BODY:
            raise PayloadTooLarge(f"the fields around the image are over {SMALL_BODY} bytes")
        self._value += data[start:end]

    def on_part_end(self) -> None:
        if self._file is None and self._name is not None:
            self.fields[self._name] = self._value.decode(self.charset, errors="replace")


async def _read_multipart(
    request: Request, writers: dict[str, SpoolWriter], limit: int
) -> Received:
    _, params = parse_options_header(request.headers["content-type"])
    boundary = params.get(b"boundary")
    if not boundary:
        raise RejectedInput("multipart body without a boundary")
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    form = _Form(charset)
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in body_chunks(request, limit):
            parser.write(chunk)
            for name, data in form.file_data:
                await writers[name].write(data)
            form.file_data.clear()
        parser.finalize()
    except FormParserError:
        raise RejectedInput("invalid multipart body") from None
    if "image" not in form.files:
        raise RejectedInput("multipart body needs a file part named 'image'")
    mask = await writers["mask"].finish() if "mask" in form.files else None
    return Received(_form_body(form.fields), await writers["image"].finish(), mask, form.fields)


def _form_body(fields: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the JSON body they stand for (``scale`` only when given,
    so that a replace job can tell)."""
    body: dict[str, Any] = {
        "provider": fields.get("provider"),
        "operation": fields.get("operation") or None,
        "options": parse_json_field(fields, "options") or {},
        "metadata": parse_json_field(fields, "metadata"),
        "webhook_url": fields.get("webhook_url") or None,
    }
    scale_raw = fields.get("scale")
    if scale_raw:
        try:
            body["scale"] = float(scale_raw[:64])
        except ValueError:
            raise RejectedInput("scale must be a number") from None
    if "prompt" in fields:
        body["prompt"] = fields["prompt"]
    # A route: ``providers`` as names split by commas, or a named ``route``.
    for name in ("providers", "route"):
        if fields.get(name):
            body[name] = fields[name]
    if fields.get("max_cost"):
        try:
            body["max_cost"] = float(fields["max_cost"][:64])
        except ValueError:
            raise RejectedInput("max_cost must be a number of credits") from None
    return body
