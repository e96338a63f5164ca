"""Reading a form (``app.api.forms``) as a stream: python-multipart callbacks keep the parts an
endpoint declared, within their limits, as the body arrives chunk by chunk. The reading is the
request's ``read`` span (its bytes and files)."""

from __future__ import annotations

import asyncio

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.api.forms import MAX_TEXT_BYTES, FileField, Form, FormLimits, FormSpec, Upload
from app.api.tracing import tracing_of
from app.errors import (
    ClientGone,
    DeadlineExceeded,
    ImageTooLarge,
    InvalidRequest,
    MalformedBody,
    UploadStalled,
)
from app.service import Admission


async def read_form(
    request: Request, spec: FormSpec, limits: FormLimits, admission: Admission
) -> Form:
    """Read and check the multipart body of an admitted request (see the module docstring).
    A body declared (or found, as it streams) larger than this form can take is refused before
    (or as soon as) it passes that bound."""
    with tracing_of(request).span("read") as span:
        form = await _read_form(request, spec, limits, admission)
        uploads = [upload for files in form.files.values() for upload in files]
        span.set_attributes(
            {
                "simscore.body.bytes": admission.held_bytes,
                "simscore.body.files": len(uploads),
                "simscore.body.file_bytes": sum(len(upload.data) for upload in uploads),
            }
        )
        return form


async def _read_form(
    request: Request, spec: FormSpec, limits: FormLimits, admission: Admission
) -> Form:
    bound = spec.max_body_bytes(limits)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bound:
        raise _body_too_large(request, spec, limits, int(declared))
    reader = PartReader(spec, limits, _boundary(request.headers.get("content-type", ""), spec))
    received = 0
    while True:
        timeout = min(limits.body_timeout_s, admission.remaining_s)
        try:
            message = await asyncio.wait_for(request.receive(), timeout)
        except TimeoutError:
            if admission.remaining_s <= 0:
                raise DeadlineExceeded(
                    "the request body did not arrive within SIMSCORE_REQUEST_TIMEOUT_S"
                ) from None
            raise UploadStalled(
                f"the request body stalled for {limits.body_timeout_s:g} s "
                "(SIMSCORE_BODY_TIMEOUT_S); send it without pauses"
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone("the client closed the connection while sending its body")
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > bound:
            raise _body_too_large(request, spec, limits, received)
        admission.hold(len(chunk))
        reader.write(chunk)
        if not message.get("more_body", False):
            break
    return reader.finish()


def _boundary(content_type: str, spec: FormSpec) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        files = " and ".join(
            f"'{f.name}'" for f in spec.fields if isinstance(f, FileField) and f.required
        )
        raise InvalidRequest(
            f"invalid request: send multipart/form-data with file fields {files} "
            f"(got Content-Type {content_type or 'none'!r})"
        )
    return boundary


def _body_too_large(
    request: Request, spec: FormSpec, limits: FormLimits, size: int
) -> ImageTooLarge:
    """413 naming the bound that refused the body: the route's own, or the global cap."""
    bound = spec.max_body_bytes(limits)
    if bound == limits.max_request_bytes:
        why = "the largest body any request may have (SIMSCORE_MAX_REQUEST_BYTES)"
    else:
        files = spec.max_files(limits.max_count)
        why = (
            f"the largest body POST {request.url.path} can take: {files} file(s) of at most "
            "SIMSCORE_MAX_UPLOAD_BYTES and its text fields"
        )
    return ImageTooLarge(
        f"request body over {bound} bytes ({size} sent or declared), {why}; each upload may "
        f"be at most {limits.max_file_bytes} bytes (SIMSCORE_MAX_UPLOAD_BYTES)"
    )


class PartReader:
    """python-multipart callbacks that keep the declared parts, within their limits."""

    def __init__(self, spec: FormSpec, limits: FormLimits, boundary: bytes) -> None:
        self._spec = spec
        self._limits = limits
        self._max_parts = spec.max_parts(limits.max_count)
        self.files: dict[str, list[Upload]] = {}
        self.texts: dict[str, str] = {}
        self._parts = 0
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._target: Upload | bytearray | None = None
        self._buffer = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def write(self, chunk: bytes) -> None:
        if chunk:
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise MalformedBody(f"malformed multipart/form-data body: {exc}") from exc

    def finish(self) -> Form:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise MalformedBody(f"malformed multipart/form-data body: {exc}") from exc
        for f in self._spec.fields:
            if isinstance(f, FileField) and f.required and not self.files.get(f.name):
                raise InvalidRequest(
                    f"invalid request: {f.name}: field required (send multipart/form-data with "
                    f"file fields {self._spec.required_files})"
                )
        return Form(self.files, self.texts)

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise InvalidRequest(
                f"invalid request: more than {self._max_parts} parts; this endpoint takes "
                + ", ".join(f.name for f in self._spec.fields)
            )
        self._headers = {}
        self._buffer = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename", b"").decode("utf-8", "replace")
        declared = self._spec.file_field(self._name)
        self._target = None
        if declared is not None:
            uploads = self.files.setdefault(self._name, [])
            limit = self._limits.max_count.get(self._name, declared.max_count)
            if len(uploads) >= limit:
                setting = f" ({declared.count_setting})" if declared.count_setting else ""
                raise InvalidRequest(
                    f"invalid request: at most {limit} file(s) in '{self._name}' per "
                    f"request{setting}; split them over several requests"
                )
            upload = Upload(filename or self._name)
            uploads.append(upload)
            self._target = upload
        elif self._spec.is_text(self._name):
            self._target = self._buffer

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        target = self._target
        if target is None:
            return  # an unknown field: skipped, not kept
        if isinstance(target, bytearray):
            target += data[start:end]
            if len(target) > MAX_TEXT_BYTES:
                raise InvalidRequest(
                    f"invalid request: {self._name}: over {MAX_TEXT_BYTES} bytes for a text field"
                )
            return
        if target.error is not None:
            return
        self._buffer += data[start:end]
        if len(self._buffer) > self._limits.max_file_bytes:
            error = ImageTooLarge(
                f"{self._name} is over {self._limits.max_file_bytes} bytes "
                "(SIMSCORE_MAX_UPLOAD_BYTES)"
            )
            declared = self._spec.file_field(self._name)
            if declared is None or declared.max_count == 1:
                raise error
            target.error = error  # one file of many fails alone; the rest goes on
            self._buffer = bytearray()

    def _part_end(self) -> None:
        if isinstance(self._target, Upload) and self._target.error is None:
            self._target.data = bytes(self._buffer)
        elif isinstance(self._target, bytearray):
            self.texts[self._name] = self._target.decode("utf-8", "replace")
        self._buffer = bytearray()
        self._target = None
