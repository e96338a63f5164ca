"""Multipart forms read as a stream, within limits, after the request was admitted.

Routes declare their fields (``FormSpec``, next to the route); ``read_form`` reads the body
chunk by chunk through python-multipart's streaming parser and keeps it in memory only:

* a file part is refused (413) as soon as it passes ``SIMSCORE_MAX_UPLOAD_BYTES``; for a
  field of many files (``candidates``) only that file fails, and its bytes are dropped;
* text fields are capped at ``MAX_TEXT_BYTES``; parts and files are counted against what the
  endpoint takes; unknown fields are skipped without being buffered;
* the whole body is capped at ``SIMSCORE_MAX_REQUEST_BYTES`` (413, from ``Content-Length`` when
  the client sends one) and counted against ``SIMSCORE_UPLOAD_MEMORY_BYTES``, shared by every
  request in flight (429 past it);
* a body that pauses longer than ``SIMSCORE_BODY_TIMEOUT_S`` is answered 408; one that runs
  past the request's deadline, 504.

The same declarations document the request body in the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.config import Settings
from app.errors import (
    ClientGone,
    DeadlineExceeded,
    ImageTooLarge,
    InputError,
    InvalidRequest,
    MalformedBody,
    UploadStalled,
)
from app.service import Admission

MAX_TEXT_BYTES = 4096
EXTRA_PARTS = 8  # parts beyond the declared fields (unknown ones are skipped, up to this many)


@dataclass(frozen=True)
class FileField:
    """An image file part; ``max_count`` > 1 for a repeated field."""

    name: str
    description: str
    required: bool = True
    max_count: int = 1
    count_setting: str | None = None  # the setting that bounds max_count, named in errors

    def schema(self) -> dict[str, Any]:
        binary = {"type": "string", "format": "binary", "description": self.description}
        if self.max_count == 1:
            return binary
        item = {"type": "string", "format": "binary"}
        return {"type": "array", "items": item, "minItems": 1, "description": self.description}


@dataclass(frozen=True)
class TextField:
    """A short text part; ``schema`` is its OpenAPI schema (type, enum, default, examples)."""

    name: str
    description: str
    schema_: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})

    def schema(self) -> dict[str, Any]:
        return {**self.schema_, "description": self.description}


@dataclass(frozen=True)
class FormSpec:
    """The fields one endpoint takes."""

    fields: tuple[FileField | TextField, ...]

    def file_field(self, name: str) -> FileField | None:
        found = next((f for f in self.fields if f.name == name), None)
        return found if isinstance(found, FileField) else None

    def is_text(self, name: str) -> bool:
        return any(isinstance(f, TextField) and f.name == name for f in self.fields)

    @property
    def required_files(self) -> str:
        """``'reference' and 'candidate'``: the required file fields, for error messages."""
        names = [f"'{f.name}'" for f in self.fields if isinstance(f, FileField) and f.required]
        return " and ".join(names)

    def max_parts(self, max_count: Mapping[str, int]) -> int:
        files = sum(
            max_count.get(f.name, f.max_count) for f in self.fields if isinstance(f, FileField)
        )
        texts = sum(isinstance(f, TextField) for f in self.fields)
        return files + texts + EXTRA_PARTS

    def openapi(self) -> dict[str, Any]:
        """The ``requestBody`` object for this form."""
        required = [f.name for f in self.fields if isinstance(f, FileField) and f.required]
        schema = {
            "type": "object",
            "required": required,
            "properties": {f.name: f.schema() for f in self.fields},
        }
        return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


@dataclass
class Upload:
    """One file part: its bytes, or why it was refused (a file of a repeated field fails alone)."""

    filename: str
    data: bytes = b""
    error: InputError | None = None


@dataclass
class Form:
    """A parsed form."""

    files: dict[str, list[Upload]]
    texts: dict[str, str]

    def file(self, name: str) -> bytes:
        """The one file of a single-file field (``read_form`` checked it is there)."""
        upload = self.files[name][0]
        if upload.error is not None:
            raise upload.error
        return upload.data

    def optional_file(self, name: str) -> bytes | None:
        return self.file(name) if self.files.get(name) else None

    def text(self, name: str) -> str | None:
        return self.texts.get(name)

    def choice(self, name: str, options: Sequence[str]) -> str | None:
        """A text field that must be one of ``options`` (absent or empty: None)."""
        value = (self.texts.get(name) or "").strip()
        if not value:
            return None
        if value not in options:
            raise InvalidRequest(
                f"invalid request: {name}: must be one of {', '.join(options)}, not {value!r}"
            )
        return value

    def flag(self, name: str) -> bool:
        """A boolean text field: true/false, 1/0, yes/no, on/off (absent: false)."""
        value = (self.texts.get(name) or "").strip().lower()
        if value in ("", "false", "0", "no", "off"):
            return False
        if value in ("true", "1", "yes", "on"):
            return True
        raise InvalidRequest(f"invalid request: {name}: must be true or false, not {value!r}")


@dataclass(frozen=True)
class FormLimits:
    """The byte and time limits of one form."""

    max_file_bytes: int
    max_request_bytes: int
    body_timeout_s: float
    max_count: Mapping[str, int] = field(default_factory=dict)  # overrides FileField.max_count

    @classmethod
    def from_settings(cls, settings: Settings, **max_count: int) -> FormLimits:
        return cls(
            settings.max_upload_bytes,
            settings.max_request_bytes,
            settings.body_timeout_s,
            max_count,
        )


async def read_form(
    request: Request, spec: FormSpec, limits: FormLimits, admission: Admission
) -> Form:
    """Read and check the multipart body of an admitted request (see the module docstring)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise _body_too_large(limits)
    reader = _PartReader(spec, limits, _boundary(request.headers.get("content-type", ""), spec))
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
        if received > limits.max_request_bytes:
            raise _body_too_large(limits)
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


def _body_too_large(limits: FormLimits) -> ImageTooLarge:
    return ImageTooLarge(
        f"request body over {limits.max_request_bytes} bytes (SIMSCORE_MAX_REQUEST_BYTES); "
        f"each upload may be at most {limits.max_file_bytes} bytes (SIMSCORE_MAX_UPLOAD_BYTES)"
    )


class _PartReader:
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
