"""Multipart forms: what an endpoint takes (declared next to its route), and what a read gives.

``app.api.multipart.read_form`` reads the body of an admitted request chunk by chunk through
python-multipart's streaming parser and keeps it in memory only:

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.config import Settings
from app.errors import InputError, InvalidRequest

MAX_TEXT_BYTES = 4096
EXTRA_PARTS = 8  # parts beyond the declared fields (unknown ones are skipped, up to this many)
PART_FRAMING_BYTES = 1024  # a part's boundary line and headers, generously


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
    """A short text part; ``schema_`` is its OpenAPI schema (type, enum, default, examples).

    With ``component``, the schema is published once under that name in the document's
    components and the field refers to it (generated clients get one named type). A
    ``deprecated`` field is an old name kept working for existing clients."""

    name: str
    description: str
    schema_: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    component: str | None = None
    deprecated: bool = False

    def schema(self) -> dict[str, Any]:
        own: dict[str, Any] = {"description": self.description}
        if self.deprecated:
            own["deprecated"] = True
        if self.component is not None:
            return {"$ref": f"#/components/schemas/{self.component}", **own}
        return {**self.schema_, **own}


@dataclass(frozen=True)
class FormSpec:
    """The fields one endpoint takes; ``name`` is its body's schema in the OpenAPI document."""

    name: str
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

    def max_body_bytes(self, limits: FormLimits) -> int:
        """The largest body this form can take: each file field's files at the upload cap, each
        text field (and each extra part) at the text cap, every part's framing, and never more
        than ``SIMSCORE_MAX_REQUEST_BYTES``."""
        files = self.max_files(limits.max_count)
        texts = sum(isinstance(f, TextField) for f in self.fields) + EXTRA_PARTS
        parts = self.max_parts(limits.max_count)
        bound = files * limits.max_file_bytes + texts * MAX_TEXT_BYTES
        return min(bound + (parts + 1) * PART_FRAMING_BYTES, limits.max_request_bytes)

    def max_files(self, max_count: Mapping[str, int]) -> int:
        return sum(
            max_count.get(f.name, f.max_count) for f in self.fields if isinstance(f, FileField)
        )

    def max_parts(self, max_count: Mapping[str, int]) -> int:
        texts = sum(isinstance(f, TextField) for f in self.fields)
        return self.max_files(max_count) + texts + EXTRA_PARTS

    def request_body(self) -> dict[str, Any]:
        """The ``requestBody`` object for this form: a reference to its named schema."""
        ref = {"$ref": f"#/components/schemas/{self.name}"}
        return {"required": True, "content": {"multipart/form-data": {"schema": ref}}}

    def components(self) -> dict[str, dict[str, Any]]:
        """The schemas this form publishes: its own object, and its fields' named types."""
        required = [f.name for f in self.fields if isinstance(f, FileField) and f.required]
        body = {
            "title": self.name,
            "type": "object",
            "required": required,
            "properties": {f.name: f.schema() for f in self.fields},
        }
        named = {
            f.component: {"title": f.component, **f.schema_}
            for f in self.fields
            if isinstance(f, TextField) and f.component is not None
        }
        return {self.name: body, **named}


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
