"""app.imaging.screens.jpeg: the marker walk and each rule, on files built segment by segment.
Every refused file is refused before Pillow opens it; what standard encoders write passes and
decodes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.errors import UnsupportedImageFormat
from app.imaging import decode_image
from app.imaging.formats import screen
from app.imaging.screens.jpeg import (
    MAX_JPEG_HEADER_SEGMENTS,
    MAX_JPEG_PADDING,
    MAX_JPEG_SCAN_PIXELS,
    MAX_JPEG_SCANS,
    MAX_JPEG_SEGMENTS,
    jpeg_structure,
)
from devtools.attacks import progressive_jpeg, with_repeated_last_scan
from devtools.images import encode, photo
from devtools.structures import (
    after_soi,
    before_first_scan,
    inside_first_scan,
    jpeg_segment,
)

MAX_PIXELS = 40_000_000
BASELINE = encode(photo("chelsea"), "JPEG")  # 451 x 300
COMMENT = jpeg_segment(0xFE, b"")


def decodes(data: bytes) -> bool:
    return decode_image(data, what="image", max_pixels=MAX_PIXELS).tensor.shape[0] == 3


@pytest.fixture
def pillow_must_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked to open a file the screen should refuse")

    monkeypatch.setattr(Image, "open", refuse)


def test_the_walk_finds_scans_frame_and_segments() -> None:
    found = jpeg_structure(BASELINE)
    assert (found.scans, found.pixels) == (1, 451 * 300)
    assert found.header_segments == found.segments - 1  # all but the end of image
    progressive = progressive_jpeg(128)
    walked = jpeg_structure(progressive)
    assert 2 < walked.scans <= 20
    assert walked.pixels == 128 * 128
    assert jpeg_structure(with_repeated_last_scan(progressive, 5)).scans == walked.scans + 5


def test_what_encoders_write_passes_and_decodes() -> None:
    for data in (
        BASELINE,
        progressive_jpeg(128),
        encode(photo("coffee"), "JPEG", quality=95, subsampling=0, optimize=True),
        encode(Image.fromarray(photo("astronaut", 64)).convert("CMYK"), "JPEG"),
        encode(photo("rocket", 64), "JPEG", exif=Image.Exif().tobytes(), restart_marker_rows=1),
    ):
        screen(data, "image")
        assert decodes(data)


# -- padding: fill bytes and stray bytes before a marker ------------------------------------


@pytest.mark.parametrize("padding", [b"\xff", b"\x00", b"\xff\x00"])
def test_padding_up_to_the_limit_is_accepted(padding: bytes) -> None:
    run = (padding * MAX_JPEG_PADDING)[:MAX_JPEG_PADDING]
    data = after_soi(BASELINE, COMMENT + run)
    screen(data, "image")
    assert decodes(data)


@pytest.mark.usefixtures("pillow_must_not_open")
@pytest.mark.parametrize("padding", [b"\xff", b"\x00", b"\xff\x00"])
def test_padding_over_the_limit_is_refused(padding: bytes) -> None:
    """19 MB of fill bytes held Pillow's marker loop for 9.5 s; stray bytes cost the same."""
    run = padding * (4 * MAX_JPEG_PADDING)
    for data in (after_soi(BASELINE, run), after_soi(BASELINE, COMMENT + run)):
        with pytest.raises(UnsupportedImageFormat, match="padding before a marker"):
            screen(data, "candidate image")


def test_fill_bytes_inside_a_scan_are_left_to_libjpeg() -> None:
    """After the first scan starts, libjpeg skips padding in C: only the marker count binds."""
    data = BASELINE[:-2] + b"\xff" * 10_000 + b"\xff\xd9"
    screen(data, "image")
    assert decodes(data)


# -- segments ------------------------------------------------------------------------------------


def test_segments_before_the_image_data_are_bounded() -> None:
    """4.7 million empty comments before the frame held Pillow for 4.3 s."""
    header = jpeg_structure(BASELINE).header_segments
    room = MAX_JPEG_HEADER_SEGMENTS - header
    screen(after_soi(BASELINE, COMMENT * room), "image")
    with pytest.raises(UnsupportedImageFormat, match=f"more than {MAX_JPEG_HEADER_SEGMENTS} "):
        screen(after_soi(BASELINE, COMMENT * (room + 1)), "image")
    # Markers without a length count too (Pillow steps through each): start-of-image floods.
    with pytest.raises(UnsupportedImageFormat, match="segments before its image data"):
        screen(after_soi(BASELINE, b"\xff\xd8" * (room + 1)), "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_markers_in_all_are_bounded() -> None:
    """Restart markers after fill bytes inside a scan each cost the walk a Python step."""
    data = inside_first_scan(BASELINE, b"\xff\xff\xd0" * (MAX_JPEG_SEGMENTS + 1))
    with pytest.raises(UnsupportedImageFormat, match=f"more than {MAX_JPEG_SEGMENTS} markers"):
        screen(data, "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_a_quantisation_segment_holds_at_most_four_tables() -> None:
    """Pillow parses each table in Python, slicing the segment after each: 128 segments of
    1,000 tables took 0.43 s."""
    table = bytes([0]) + bytes(range(1, 65))
    screen(before_first_scan(BASELINE, jpeg_segment(0xDB, table * 4)), "image")
    with pytest.raises(UnsupportedImageFormat, match="quantisation segment"):
        screen(before_first_scan(BASELINE, jpeg_segment(0xDB, table * 1000)), "image")


@pytest.mark.usefixtures("pillow_must_not_open")
def test_a_frame_header_must_fit_its_components() -> None:
    """Pillow loops over a frame header's whole length in Python, three bytes at a time."""
    at = BASELINE.index(b"\xff\xc0")
    length = int.from_bytes(BASELINE[at + 2 : at + 4], "big")
    padded = jpeg_segment(0xC0, BASELINE[at + 4 : at + 2 + length] + b"\0" * 60_000)
    with pytest.raises(UnsupportedImageFormat, match="frame header of"):
        screen(BASELINE[:at] + padded + BASELINE[at + 2 + length :], "image")
    frame = BASELINE[at : at + 2 + length]
    with pytest.raises(UnsupportedImageFormat, match="two frame headers"):
        screen(before_first_scan(BASELINE, frame), "image")


# -- scans ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pillow_must_not_open")
def test_a_jpeg_with_repeated_scans_is_refused_from_its_bytes() -> None:
    data = with_repeated_last_scan(progressive_jpeg(128), 1000)
    with pytest.raises(UnsupportedImageFormat, match="scans"):
        screen(data, "candidate image")


def test_the_scan_budget_shrinks_as_images_grow() -> None:
    """Each scan is a pass over every block: a large image gets fewer scans than a small one."""
    small = with_repeated_last_scan(progressive_jpeg(64), MAX_JPEG_SCANS - 20)
    screen(small, "image")
    side = 4000
    big = encode(np.full((side, side, 3), 90, np.uint8), "JPEG", progressive=True)
    found = jpeg_structure(big)
    allowed = MAX_JPEG_SCAN_PIXELS // found.pixels
    assert found.scans <= allowed < MAX_JPEG_SCANS
    screen(big, "image")
    with pytest.raises(UnsupportedImageFormat, match=f"at most {allowed} scans"):
        screen(with_repeated_last_scan(big, allowed - found.scans + 1), "image")


def test_only_the_first_image_of_an_mpo_is_walked() -> None:
    """Images appended after the first end of image are never decoded: not counted."""
    flooded = with_repeated_last_scan(progressive_jpeg(64), 2 * MAX_JPEG_SCANS)
    screen(BASELINE + flooded, "image")
