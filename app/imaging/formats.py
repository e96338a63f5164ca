"""Screen uploaded bytes before Pillow sees them: refuse formats we do not take, and files built to
make a decoder slow.

Pillow decodes pixels in C, but some work happens in Python or scales with what a tiny file
declares: PNG chunks are walked one by one in Python, a JPEG's markers up to its first scan
byte by byte, every scan of a progressive JPEG is a pass over all its coefficients, RLE BMPs are
decoded by a Python loop, an uncompressed TIFF becomes one Python tile per strip, a GIF's blocks
before its image are read in Python. Each format's module under ``app.imaging.screens`` reads
only the bytes' structure (no pixel is decoded) and runs in milliseconds at the upload cap; each
rule refuses with ``UnsupportedImageFormat`` (415) naming what was wrong.
"""

from __future__ import annotations

from app.errors import UnsupportedImageFormat
from app.imaging.screens.bmp import check_bmp
from app.imaging.screens.gif import check_gif, is_gif
from app.imaging.screens.jpeg import check_jpeg
from app.imaging.screens.png import SIGNATURE as PNG_SIGNATURE
from app.imaging.screens.png import check_png
from app.imaging.screens.tiff import check_tiff, is_tiff
from app.imaging.screens.webp import check_webp, is_webp

SUPPORTED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF, BMP or TIFF"

# Text formats someone may mistake for images; matched after an optional BOM and whitespace.
_REFUSED_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype svg", "SVG"),
    (b"%pdf", "PDF"),
    (b"%!ps", "PostScript"),
)


def screen(data: bytes, what: str) -> None:
    """Raise ``UnsupportedImageFormat`` for refused formats and pathological files."""
    head = data[:256].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, name in _REFUSED_PREFIXES:
        if head.startswith(prefix):
            raise UnsupportedImageFormat(
                f"the {what} is {name}, which is not supported; "
                f"convert it to {SUPPORTED_TEXT} (raster) first"
            )
    if data.startswith(PNG_SIGNATURE):
        check_png(data, what)
    elif data.startswith(b"\xff\xd8"):
        check_jpeg(data, what)
    elif data.startswith(b"BM"):
        check_bmp(data, what, SUPPORTED_TEXT)
    elif is_tiff(data):
        check_tiff(data, what)
    elif is_gif(data):
        check_gif(data, what)
    elif len(data) >= 12 and is_webp(data):
        check_webp(data, what)
