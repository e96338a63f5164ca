"""Hostile inputs, one builder per attack class, shared by the tests
(``tests/api/test_hostile_requests.py``, ``tests/api/test_hostile_decoding.py``,
``tests/test_server_hostile.py``) and the measurement scripts (``bench/attacks.py``,
``bench/decode_bound.py``).

* Files built to make a decoder slow or huge: a PNG flooded with empty chunks, a progressive
  JPEG with repeated scans, JPEGs flooded with fill bytes or empty comments, a TIFF whose strip
  table is millions of entries long, a TIFF whose directories loop, GIFs flooded with extension
  blocks or tiny data blocks, a WebP of millions of empty chunks, run-length encoded BMPs (tiny,
  or a flood of end-of-line codes), a GIF of a few dozen bytes declaring a 6000x6000 canvas, a
  decompression bomb. Each at the upload cap for the benchmark, and small for the tests.
* Forms that push the request limits: a file one byte over the cap, a huge text field, too many
  parts, too many candidates, padding that holds upload memory; a body that never ends.
* Keys: none, empty, wrong.
* Clients over raw sockets: slow ones (nothing, half a header, a header dripped byte by byte,
  half a body), idle ones, and one that sends a request and goes away before the answer.

Multipart bodies can be described without holding them: a ``Part`` whose ``data`` is an ``int``
is that many bytes of ``fill``, streamed in chunks (``form_chunks``) and counted in
``form_length`` for the ``Content-Length`` header.
"""

from __future__ import annotations

import io
import select
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from devtools import structures
from devtools.images import encode, photo
from devtools.sockets import connect

BOUNDARY = "simscore-attack-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
KEY = "attack-test-key-0123456789"  # a key of the servers these inputs are aimed at
WRONG_KEY = "attack-test-key-9876543210"
CHUNK_BYTES = 64 * 1024

# -- keys -------------------------------------------------------------------------------------


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


AUTH_ATTEMPTS: dict[str, dict[str, str]] = {
    "no key": {},
    "empty key": {"Authorization": "Bearer "},
    "wrong key": bearer(WRONG_KEY),
}

# -- hostile image files ------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_chunk_flood(chunks: int = 1_000_000) -> bytes:
    """A valid 16x16 grey PNG with ``chunks`` empty IDAT chunks before its real one (12 bytes
    each: a million is 12 MB, under the default upload cap)."""
    header = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    rows = zlib.compress((b"\0" + b"\x80" * 48) * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"") * chunks
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def with_repeated_last_scan(jpeg: bytes, times: int) -> bytes:
    """``jpeg`` with its last scan repeated ``times`` more times (still a valid file)."""
    last = jpeg.rfind(b"\xff\xda")
    return jpeg[:-2] + jpeg[last:-2] * times + b"\xff\xd9"


def progressive_jpeg(width: int, height: int | None = None) -> bytes:
    """A progressive JPEG of a photograph, as libjpeg writes it (about 10 scans)."""
    image = Image.fromarray(photo("astronaut")).resize((width, height or width))
    return encode(image, "JPEG", quality=85, progressive=True)


def jpeg_scan_flood(scans: int = 1000, side: int = 128) -> bytes:
    """A small progressive JPEG whose last scan is repeated ``scans`` times."""
    return with_repeated_last_scan(progressive_jpeg(side), scans)


def rle_bmp(
    width: int = 6000,
    height: int = 6000,
    *,
    compression: int = 1,
    end_of_line_codes: int = 0,
    palette_colours: int = 26,
) -> bytes:
    """A BMP declaring RLE8 (``compression=1``) or RLE4 (2) pixels. With no end-of-line codes it
    is just "end of bitmap" (160 bytes at the defaults: Pillow decodes it to the full canvas);
    with ``end_of_line_codes`` (2 bytes each) Pillow's Python decoder pads a row per code."""
    palette = b"\0\0\0\0" * palette_colours
    pixels = b"\x00\x00" * end_of_line_codes + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    info = struct.pack(
        "<IiiHHIIiiII",
        40,
        width,
        height,
        1,
        8 if compression == 1 else 4,
        compression,
        len(pixels),
        2835,
        2835,
        palette_colours,
        0,
    )
    return header + info + palette + pixels


def tiny_gif(width: int = 6000, height: int = 6000) -> bytes:
    """A GIF of a few dozen bytes: a ``width`` x ``height`` logical screen holding one 1x1
    frame. Pillow decodes it at the screen's size."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # 2-colour table
    colours = b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
    # LZW, minimum code size 2: clear (4), colour 0, end (5), as 3-bit codes, LSB first.
    pixels = b"\x02" + b"\x02\x44\x01" + b"\x00"
    return screen + colours + frame + pixels + b";"


def png16_canvas(width: int = 6000, height: int = 6000) -> bytes:
    """A blank 16-bit grey PNG: 70 kB at 6000x6000."""
    return encode(Image.fromarray(np.zeros((height, width), np.uint16)), "PNG")


def float_tiff_canvas(width: int = 6000, height: int = 6000) -> bytes:
    """A blank 32-bit float TIFF, deflated: 230 kB at 6000x6000."""
    image = Image.fromarray(np.zeros((height, width), np.float32))
    return encode(image, "TIFF", compression="tiff_adobe_deflate")


HUGE_CANVASES: dict[str, Callable[[], bytes]] = {
    "gif": tiny_gif,
    "png-16-bit": png16_canvas,
    "tiff-float": float_tiff_canvas,
}


def small_jpeg() -> bytes:
    return encode(photo("astronaut", 64), "JPEG")


def jpeg_fill_flood(fill_bytes: int = 19_000_000) -> bytes:
    """``FF D8``, then ``fill_bytes`` of 0xFF fill bytes, then a small valid JPEG: Pillow steps
    through the fill one byte at a time in Python."""
    return structures.after_soi(small_jpeg(), b"\xff" * fill_bytes)


def jpeg_comment_flood(comments: int = 4_700_000) -> bytes:
    """A small JPEG after ``comments`` empty comment segments (4 bytes each: 19 MB)."""
    return structures.after_soi(small_jpeg(), structures.jpeg_segment(0xFE, b"") * comments)


def tiff_ifd_loop(pages: int = 3) -> bytes:
    """A grey TIFF whose last directory links back to the first."""
    return structures.grey_tiff(64, 64, pages=pages, links=[*range(1, pages), 0])


def small_gif() -> bytes:
    return encode(Image.fromarray(photo("astronaut", 64)).quantize(16), "GIF")


def gif_extension_flood(extensions: int = 3_800_000) -> bytes:
    """A small GIF after ``extensions`` one-byte comment extensions (5 bytes each)."""
    comment = structures.gif_extension(0xFE, b"x")
    return structures.gif_with_extensions(small_gif(), comment * extensions)


def gif_block_flood(payload_bytes: int = 9_500_000) -> bytes:
    """A small GIF after one comment of ``payload_bytes`` in one-byte sub-blocks (19 MB)."""
    comment = structures.gif_extension(0xFE, b"x" * payload_bytes, block=1)
    return structures.gif_with_extensions(small_gif(), comment)


def webp_chunk_flood(chunks: int = 2_000_000) -> bytes:
    """A small WebP with ``chunks`` empty unknown chunks (8 bytes each: 16 MB)."""
    parts = structures.webp_chunks(encode(photo("astronaut", 64), "WEBP"))
    vp8x = structures.webp_chunk(b"VP8X", bytes(4) + (63).to_bytes(3, "little") * 2)
    junk = structures.webp_chunk(b"JUNK", b"")
    return structures.webp_of([vp8x, *[junk] * chunks, *parts])


def png_bomb(side: int = 7000) -> bytes:
    """A 1-bit PNG of ``side`` x ``side`` pixels in a few kB (over SIMSCORE_MAX_PIXELS at 7000)."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@dataclass(frozen=True)
class HostileFile:
    """A file built to be slow or huge to decode, and how the service answers it. ``build``
    makes it at full size (the benchmark's), ``small`` as small as still refused (the tests')."""

    build: Callable[[], bytes]
    status: int
    words: str  # in the answer's detail
    issue: str  # what it did before the service screened it
    small: Callable[[], bytes] | None = None

    def test_file(self) -> bytes:
        return (self.small or self.build)()


HOSTILE_FILES: dict[str, HostileFile] = {
    "png-chunk-flood": HostileFile(
        png_chunk_flood, 415, "chunks", "1,000,000 empty chunks held a decode thread for seconds"
    ),
    "jpeg-scan-flood": HostileFile(
        jpeg_scan_flood, 415, "scans", "1,000 repeated scans took 1.2 s"
    ),
    "rle-bmp-tiny": HostileFile(
        rle_bmp, 415, "run-length", "160 bytes decoded to a 6000x6000 float image"
    ),
    "rle-bmp-eol-flood": HostileFile(
        lambda: rle_bmp(end_of_line_codes=6000, palette_colours=256),
        415,
        "run-length",
        "12 kB held the GIL for 1.4 s",
    ),
    "png-bomb": HostileFile(png_bomb, 413, "SIMSCORE_MAX_PIXELS", "49 Mpx in a few kB"),
    "tiff-strip-flood": HostileFile(
        structures.strip_flood_tiff,
        415,
        "entries in tag 273",
        "2.4 million strip entries in 19 MB: 14 s of CPU and 1.5 GB per image",
        lambda: structures.strip_flood_tiff(64, 5000),
    ),
    "tiff-ifd-loop": HostileFile(
        tiff_ifd_loop,
        415,
        "loops back",
        "a directory chain without end (Pillow 13 stops at a repeat when it counts frames)",
    ),
    "jpeg-fill-flood": HostileFile(
        jpeg_fill_flood,
        415,
        "padding before a marker",
        "19 MB of fill bytes: 7.9 s of CPU",
        lambda: jpeg_fill_flood(10_000),
    ),
    "jpeg-comment-flood": HostileFile(
        jpeg_comment_flood,
        415,
        "segments before its image data",
        "4.7 million empty comments in 19 MB: 4.5 s of CPU",
        lambda: jpeg_comment_flood(1000),
    ),
    "gif-extension-flood": HostileFile(
        gif_extension_flood,
        415,
        "extension blocks",
        "3.8 million comment extensions in 19 MB: 1.8 s of CPU",
        lambda: gif_extension_flood(1000),
    ),
    "gif-block-flood": HostileFile(
        gif_block_flood,
        415,
        "data blocks",
        "a comment in 9.5 million one-byte blocks (19 MB): 2.0 s of CPU",
        lambda: gif_block_flood(200_000),
    ),
    "webp-chunk-flood": HostileFile(
        webp_chunk_flood,
        415,
        "chunks",
        "2 million empty chunks in 16 MB: 0.09 s (libwebp parses them in C)",
        lambda: webp_chunk_flood(5000),
    ),
}


# -- legitimate files at the limits (the decode time bound) ---------------------------------------


def large_photo(width: int, height: int) -> Image.Image:
    """A photograph upscaled to ``width`` x ``height`` (smooth: it compresses like a render)."""
    return Image.fromarray(photo("astronaut")).resize((width, height), Image.Resampling.BILINEAR)


def detailed_photo(width: int, height: int, noise: float, seed: int = 0) -> Image.Image:
    """``large_photo`` with Gaussian noise of ``noise`` grey levels: detail a JPEG must code."""
    pixels = np.asarray(large_photo(width, height), dtype=np.float32)
    pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# -- forms --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One multipart part: a file (``filename`` set) or a text field. ``data`` may be an int:
    that many bytes of ``fill``, never held whole."""

    name: str
    data: bytes | int
    filename: str | None = None
    fill: bytes = b"\0"

    @property
    def head(self) -> bytes:
        disposition = f'form-data; name="{self.name}"'
        if self.filename is not None:
            disposition += f'; filename="{self.filename}"'
        kind = "Content-Type: application/octet-stream\r\n" if self.filename is not None else ""
        return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode()

    @property
    def size(self) -> int:
        return self.data if isinstance(self.data, int) else len(self.data)


def file_part(name: str, data: bytes | int, filename: str = "image.png") -> Part:
    return Part(name, data, filename)


def pair_parts(reference: bytes, candidate: bytes | int, **texts: str) -> list[Part]:
    """The parts of ``POST /compare`` (and ``/compare/map``)."""
    parts = [file_part("reference", reference), file_part("candidate", candidate)]
    return parts + [Part(name, value.encode()) for name, value in texts.items()]


def batch_parts(reference: bytes, candidates: Sequence[bytes | int], **texts: str) -> list[Part]:
    """The parts of ``POST /compare/batch``."""
    parts = [file_part("reference", reference)]
    parts += [
        file_part("candidates", data, f"candidate-{i}.png") for i, data in enumerate(candidates)
    ]
    return parts + [Part(name, value.encode()) for name, value in texts.items()]


_CLOSE = f"--{BOUNDARY}--\r\n".encode()


def form_length(parts: Sequence[Part]) -> int:
    """The body's length in bytes (for ``Content-Length``), without building it."""
    return sum(len(p.head) + p.size + 2 for p in parts) + len(_CLOSE)


def form_chunks(parts: Sequence[Part], chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The body, in chunks of at most ``chunk_bytes`` (a part head is a chunk of its own)."""
    for part in parts:
        yield part.head
        if isinstance(part.data, int):
            block = (part.fill * (chunk_bytes // len(part.fill) + 1))[:chunk_bytes]
            left = part.data
            while left > 0:
                yield block[: min(left, chunk_bytes)]
                left -= chunk_bytes
        else:
            for start in range(0, len(part.data), chunk_bytes):
                yield part.data[start : start + chunk_bytes]
        yield b"\r\n"
    yield _CLOSE


def form_body(parts: Sequence[Part]) -> bytes:
    """The whole body (for small forms)."""
    return b"".join(form_chunks(parts))


def oversized_file(reference: bytes, max_upload_bytes: int) -> list[Part]:
    """A ``/compare`` form whose candidate is 4x over ``SIMSCORE_MAX_UPLOAD_BYTES``."""
    return pair_parts(reference, 4 * max_upload_bytes)


def huge_text_field(reference: bytes, candidate: bytes, size: int = 1 << 20) -> list[Part]:
    """A ``metrics`` field of ``size`` bytes (the old limit for a text field was 1 MiB)."""
    return [Part("metrics", size, fill=b"vgg,"), *pair_parts(reference, candidate)]


def too_many_parts(reference: bytes, candidate: bytes, parts: int = 1000) -> list[Part]:
    """``parts`` tiny unknown fields before the images."""
    junk = [Part(f"junk-{i}", b"x") for i in range(parts)]
    return [*junk, *pair_parts(reference, candidate)]


def too_many_candidates(reference: bytes, candidate: bytes, count: int) -> list[Part]:
    """A ``/compare/batch`` form of ``count`` candidates."""
    return batch_parts(reference, [candidate] * count)


def padded(parts: Sequence[Part], padding_bytes: int) -> list[Part]:
    """``parts`` after an unknown field of ``padding_bytes``: the field is skipped, never kept,
    but its bytes count against SIMSCORE_UPLOAD_MEMORY_BYTES while the request is in flight."""
    return [Part("padding", padding_bytes), *parts]


def endless_file(name: str = "reference") -> Iterator[bytes]:
    """A body that never ends: one file part, then zero bytes for ever (send it chunked)."""
    yield Part(name, 0, "endless.png").head
    block = b"\0" * CHUNK_BYTES
    while True:
        yield block


# -- raw HTTP over sockets --------------------------------------------------------------------


def request_head(
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    content_length: int | None = None,
    chunked: bool = False,
    content_type: str = CONTENT_TYPE,
) -> bytes:
    """The request line and headers of a ``POST`` (``Host: simscore``)."""
    lines = [f"POST {path} HTTP/1.1", "Host: simscore", f"Content-Type: {content_type}"]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


SLOW_CLIENTS: tuple[str, ...] = ("nothing", "half-header", "half-body")


def slow_client(url: str, kind: str, headers: Mapping[str, str] | None = None) -> socket.socket:
    """A connection that sends ``nothing``, ``half-header`` (the request line and part of the
    headers) or ``half-body`` (a whole head declaring 100 kB, then 40 % of it) and then
    nothing more. The caller closes it."""
    sock = connect(url)
    if kind == "half-header":
        sock.sendall(b"POST /compare HTTP/1.1\r\nHost: simscore\r\nContent-")
    elif kind == "half-body":
        head = request_head("/compare", headers=headers, content_length=100_000)
        sock.sendall(head + Part("reference", 0, "r.png").head + b"\0" * 40_000)
    elif kind != "nothing":
        raise ValueError(f"unknown slow client {kind!r}; choose from {', '.join(SLOW_CLIENTS)}")
    return sock


@dataclass(frozen=True)
class Closed:
    """How a connection ended: closed by the server (or still open), what it sent, when its
    first byte came and when it closed (seconds from the start the caller gave)."""

    closed: bool
    answer: bytes
    elapsed_s: float
    first_byte_s: float | None = None

    @property
    def status(self) -> int | None:
        """The status of the answer, if one came."""
        if not self.answer.startswith(b"HTTP/1."):
            return None
        return int(self.answer.split(b" ", 2)[1])

    @property
    def detail(self) -> str:
        """The answer's body (a JSON ``detail`` from the app, or text)."""
        return self.answer.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")

    def describe(self) -> str:
        if not self.closed:
            return "still open"
        if self.status is None:
            return "connection closed, no answer"
        return f"{self.status}, connection closed"


def wait_closed(sock: socket.socket, timeout_s: float, started: float | None = None) -> Closed:
    """Read until the server closes ``sock`` or ``timeout_s`` passes (from ``started``)."""
    started = time.monotonic() if started is None else started
    received = b""
    first: float | None = None
    while True:
        left = timeout_s - (time.monotonic() - started)
        if left <= 0:
            return Closed(False, received, time.monotonic() - started, first)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return Closed(False, received, time.monotonic() - started, first)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return Closed(True, received, time.monotonic() - started, first)
        if first is None:
            first = time.monotonic() - started
        received += chunk


def stream_until_answer(
    sock: socket.socket, chunks: Iterable[bytes], timeout_s: float = 60
) -> tuple[Closed, int]:
    """Send ``chunks`` until the server answers (or closes), then read the answer; returns it
    and the bytes the client had sent by then."""
    started = time.monotonic()
    sent = 0
    sock.settimeout(timeout_s)  # a send blocked that long ends the stream too
    for chunk in chunks:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
        if time.monotonic() - started > timeout_s:
            break
    return wait_closed(sock, timeout_s, started), sent


def drip_header(url: str, interval_s: float, timeout_s: float) -> Closed:
    """Send a request head one byte every ``interval_s``, never finishing it, until the server
    answers or closes the connection (or ``timeout_s`` passes)."""
    head = request_head("/compare", content_length=10).removesuffix(b"\r\n") * 100
    sock = connect(url)
    started = time.monotonic()
    try:
        for byte in head:
            if time.monotonic() - started > timeout_s:
                break
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            readable, _, _ = select.select([sock], [], [], interval_s)
            if readable:
                break  # an answer or a close: read it below
        return wait_closed(sock, timeout_s, started)
    finally:
        sock.close()


def abandon(
    url: str, path: str, parts: Sequence[Part], headers: Mapping[str, str], after_s: float = 0.0
) -> None:
    """Send a whole request, wait ``after_s`` (its decoding starts), then close the connection
    without reading the answer."""
    with connect(url) as sock:
        sock.settimeout(60)
        sock.sendall(request_head(path, headers=headers, content_length=form_length(parts)))
        for chunk in form_chunks(parts, 1 << 20):
            sock.sendall(chunk)
        time.sleep(after_s)
