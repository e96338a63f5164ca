"""The decode stage (``Decoder``): the reference first, the mask at its compared size, the
candidates sized to it and failing alone; what it decodes is held against the shared memory
budget until the request's block ends."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from app.config import Settings
from app.errors import ImageTooLarge, ImageTooSmall, InvalidRequest, NotAnImage, Overloaded
from app.imaging import PreparedImage
from app.pipeline import CompareOptions
from app.pipeline.decode import Decoder
from devtools.images import encode, photo, photo_png

REF = encode(photo("chelsea", 64))


async def test_candidates_are_sized_to_the_reference_and_fail_alone(
    make_settings: Callable[..., Settings],
) -> None:
    decoder = Decoder(make_settings())
    candidates = [photo_png("coffee", 128), b"", encode(photo("astronaut", 8))]
    async with decoder.decode(REF, candidates, CompareOptions(), decoder.pixel_budget()) as got:
        good, empty, tiny = got.candidates
        assert isinstance(good, PreparedImage) and good.size == got.reference.size
        assert good.resized and not got.reference.resized
        assert isinstance(empty, NotAnImage)
        assert isinstance(tiny, ImageTooSmall)
        assert got.mask is None and len(got.reference_key) == 32
        assert got.decode_ms > 0
    decoder.close()


async def test_the_mask_is_read_at_the_compared_size(
    make_settings: Callable[..., Settings],
) -> None:
    decoder = Decoder(make_settings(max_side=32))
    selection = np.zeros((64, 64), np.uint8)
    selection[:, :32] = 255  # the left half, at the uploaded size
    options = CompareOptions(mask=encode(selection))
    async with decoder.decode(REF, [REF], options, decoder.pixel_budget()) as got:
        assert got.mask is not None
        assert tuple(got.mask.shape) == (1, *got.reference.tensor.shape[1:])
        assert got.mask.dtype.is_floating_point is False
        assert got.mask[0, :, :16].all() and not got.mask[0, :, 16:].any()
    decoder.close()


@pytest.mark.parametrize(("mask", "error"), [(b"", "empty"), (b"not an image", "not a")])
async def test_a_bad_mask_fails_the_request(
    make_settings: Callable[..., Settings], mask: bytes, error: str
) -> None:
    decoder = Decoder(make_settings())
    with pytest.raises((InvalidRequest, NotAnImage), match=error):
        async with decoder.decode(REF, [REF], CompareOptions(mask=mask), decoder.pixel_budget()):
            pass
    assert decoder.memory.used == 0
    decoder.close()


async def test_held_memory_counts_every_image_until_the_block_ends(
    make_settings: Callable[..., Settings],
) -> None:
    one_image = 3 * 64 * 64 * 4  # float32
    decoder = Decoder(make_settings(decoded_memory_bytes=2 * one_image))
    budget = decoder.pixel_budget()
    async with decoder.decode(REF, [REF, REF], CompareOptions(), budget) as got:
        first, second = got.candidates
        assert isinstance(first, PreparedImage)
        assert isinstance(second, Overloaded)  # past the budget: fails alone, with 429
        assert decoder.memory.used == 2 * one_image
    assert decoder.memory.used == 0
    decoder.close()


async def test_the_pixel_budget_is_the_requests(make_settings: Callable[..., Settings]) -> None:
    decoder = Decoder(make_settings(max_request_pixels=2 * 64 * 64))
    async with decoder.decode(REF, [REF, REF], CompareOptions(), decoder.pixel_budget()) as got:
        assert sum(isinstance(c, ImageTooLarge) for c in got.candidates) == 1
    decoder.close()


async def test_decoding_and_pixel_work_run_on_the_decode_threads(
    make_settings: Callable[..., Settings],
) -> None:
    decoder = Decoder(make_settings(decode_threads=1))
    name = await decoder.run("lane", lambda: threading.current_thread().name)
    assert name.startswith("simscore-decode")
    decoder.close()
