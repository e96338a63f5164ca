"""app.imaging.screens.tiff: strip and tile tables against the size, directory chains and loops,
entry and value counts, compression schemes; what encoders write passes and decodes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import UnsupportedImageFormat
from app.imaging import decode_image
from app.imaging.formats import screen
from app.imaging.screens import tiff as tiff_screen
from app.imaging.screens.tiff import MAX_TIFF_TAGS, MAX_TIFF_VALUES
from devtools.images import encode, photo
from devtools.structures import (
    LONG,
    SHORT,
    UNDEFINED,
    Tag,
    grey_page,
    grey_pixels,
    grey_tiff,
    strip_flood_tiff,
    tiff,
    tiff_directory_offsets,
    tiled_tiff,
)

MAX_PIXELS = 40_000_000


def decodes(data: bytes) -> tuple[int, ...]:
    return tuple(decode_image(data, what="image", max_pixels=MAX_PIXELS).tensor.shape)


@pytest.fixture
def pillow_must_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked to open a file the screen should refuse")

    monkeypatch.setattr(Image, "open", refuse)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"compression": "tiff_lzw"},
        {"compression": "tiff_adobe_deflate"},
        {"compression": "packbits"},
        {"compression": "jpeg"},
        {"big_tiff": True},
    ],
)
def test_what_encoders_write_passes_and_decodes(options: dict[str, object]) -> None:
    data = encode(photo("chelsea"), "TIFF", **options)
    screen(data, "image")
    assert decodes(data) == (3, 300, 451)


def test_multi_page_fax_and_hand_built_files_pass() -> None:
    pages = [Image.fromarray(photo(name, 64)) for name in ("astronaut", "coffee", "rocket")]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    fax = encode(Image.fromarray(photo("chelsea")).convert("1"), "TIFF", compression="group4")
    for data in (
        buffer.getvalue(),
        fax,
        grey_tiff(40, 30, rows_per_strip=1),
        grey_tiff(40, 30, rows_per_strip=7, big=True),
        grey_tiff(40, 30, pages=3),
        tiled_tiff(40, 40, 16),
    ):
        screen(data, "image")
        assert decodes(data)[0] == 3


# -- strip and tile tables ------------------------------------------------------------------


@pytest.mark.usefixtures("pillow_must_not_open")
def test_more_strips_than_the_size_needs_are_refused() -> None:
    """The flood: every extra entry became a Python tile (2.4 million in 19 MB: 14 s)."""
    with pytest.raises(UnsupportedImageFormat, match="2000 entries in tag 273 where its 64x64 px"):
        screen(strip_flood_tiff(64, 2000), "candidate image")
    with pytest.raises(UnsupportedImageFormat, match="need 30 strips"):
        screen(grey_tiff(40, 30, rows_per_strip=1, strips=31), "image")
    with pytest.raises(UnsupportedImageFormat, match="tag 324 where its 40x40 px need 9 tiles"):
        screen(tiled_tiff(40, 40, 16, tiles=10), "image")


def test_as_many_strips_as_the_size_needs_pass() -> None:
    screen(strip_flood_tiff(64, 64), "image")
    screen(grey_tiff(40, 30, rows_per_strip=1, strips=30), "image")
    screen(grey_tiff(40, 30, rows_per_strip=1, strips=12), "image")  # fewer: the decoder judges


@pytest.mark.usefixtures("pillow_must_not_open")
def test_strips_and_tiles_are_bounded_in_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiff_screen, "MAX_TIFF_STRIPS", 20)
    with pytest.raises(UnsupportedImageFormat, match="40x30 px in 30 strips"):
        screen(grey_tiff(40, 30, rows_per_strip=1), "image")
    with pytest.raises(UnsupportedImageFormat, match="in 25 tiles"):
        screen(tiled_tiff(80, 80, 16), "image")
    with pytest.raises(UnsupportedImageFormat, match="strips of 0 rows"):
        screen(grey_tiff(40, 30, extra=[Tag(278, LONG, [0])]), "image")


# -- directories ------------------------------------------------------------------------------


@pytest.mark.usefixtures("pillow_must_not_open")
@pytest.mark.parametrize("links", [[0], [1, 0], [1, 2, 1]])
def test_a_directory_chain_that_loops_is_refused(links: list[int]) -> None:
    data = grey_tiff(20, 20, pages=len(links), links=links)
    with pytest.raises(UnsupportedImageFormat, match="loops back on itself"):
        screen(data, "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_directories_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiff_screen, "MAX_TIFF_IFDS", 4)
    screen(grey_tiff(20, 20, pages=4), "image")
    with pytest.raises(UnsupportedImageFormat, match="more than 4 images"):
        screen(grey_tiff(20, 20, pages=5), "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_entries_of_a_directory_are_bounded() -> None:
    filler = [Tag(40000 + i, SHORT, [1]) for i in range(MAX_TIFF_TAGS)]
    with pytest.raises(UnsupportedImageFormat, match="directory of 1033 entries"):
        screen(grey_tiff(20, 20, extra=filler), "image")
    later = grey_tiff(20, 20, pages=2)  # the same on a later page: its entry count is read
    second = later.rindex(b"\x09\x00\x00\x01")  # page 2's count (9) and first tag (256)
    flooded = later[:second] + (MAX_TIFF_TAGS + 1).to_bytes(2, "little") + later[second + 2 :]
    with pytest.raises(UnsupportedImageFormat, match="directory of 1025 entries"):
        screen(flooded, "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_numeric_tag_values_are_bounded() -> None:
    """Pillow turns numeric values into Python tuples (and back into bytes when it rewrites
    EXIF): a long one is refused; bytes (ICC, XMP) are not counted."""
    screen(grey_tiff(20, 20, extra=[Tag(34675, UNDEFINED, b"\0" * 200_000)]), "image")
    screen(grey_tiff(20, 20, extra=[Tag(40001, SHORT, [1] * MAX_TIFF_VALUES)]), "image")
    long_tag = Tag(40001, SHORT, [1] * (MAX_TIFF_VALUES + 1))
    with pytest.raises(UnsupportedImageFormat, match="tag 40001 holding 65537 values"):
        screen(grey_tiff(20, 20, extra=[long_tag]), "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_the_exif_directory_is_screened_too() -> None:
    """Pillow reads the first image's EXIF directory with it."""
    image = grey_page(20, 20)
    exif = [Tag(0x9000 + i, SHORT, [1]) for i in range(MAX_TIFF_TAGS + 1)]
    pixels = grey_pixels(20, 20)
    pointer = tiff_directory_offsets([[*image, Tag(34665, LONG, [0])], exif], data=pixels)[1]
    data = tiff([[*image, Tag(34665, LONG, [pointer])], exif], data=pixels, links=[None, None])
    with pytest.raises(UnsupportedImageFormat, match="directory of 1025 entries"):
        screen(data, "image")


# -- compression -------------------------------------------------------------------------------


@pytest.mark.usefixtures("pillow_must_not_open")
@pytest.mark.parametrize(
    ("scheme", "name"),
    [(6, "old-style JPEG"), (34925, "LZMA"), (50001, "WebP"), (777, "an unknown scheme")],
)
def test_compression_schemes_outside_the_list_are_refused(scheme: int, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat, match=f"compressed with {name}.*\\({scheme}\\)"):
        screen(grey_tiff(20, 20, compression=scheme), "image")


def test_a_refused_file_never_reaches_libtiff() -> None:
    """Sanity: the strip flood, decoded without the screen, is the slow path it is said to be
    (one Python tile per entry), at a size that keeps this test fast."""
    data = strip_flood_tiff(64, 5000)
    with Image.open(io.BytesIO(data)) as image:
        assert len(image.tile) == 5000
        assert np.asarray(image).shape == (64, 64)
