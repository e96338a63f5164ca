"""app.imaging.prepare: the minimum side, the max-side fit and the size policy that pairs a
candidate with its reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.errors import ImageTooSmall, InvalidRequest, SizeMismatch
from app.imaging import PreparedImage, prepare_candidate, prepare_pair, prepare_reference, resize
from app.vocabulary import MIN_SIDE
from devtools.images import encode, photo

MAX_PIXELS = 40_000_000
ASTRONAUT = photo("astronaut")  # (512, 512, 3)
CHELSEA = photo("chelsea")  # (300, 451, 3)


def chw(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [0, 1], the expected decode."""
    return torch.from_numpy(np.array(array)).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize(("width", "height"), [(MIN_SIDE - 1, 100), (100, 3), (1, 1)])
def test_tiny_image_refused(width: int, height: int) -> None:
    data = encode(np.zeros((height, width, 3), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooSmall) as caught:
        prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)
    assert f"{width}x{height}" in str(caught.value)
    assert "pools four times" in str(caught.value)
    assert "at least 16 px" in str(caught.value)


def test_tiny_candidate_refused() -> None:
    reference = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=1024)
    with pytest.raises(ImageTooSmall, match="candidate"):
        prepare_candidate(
            encode(CHELSEA[:10], "PNG"),
            reference,
            max_pixels=MAX_PIXELS,
            size_policy="resize",
        )


def test_image_too_thin_after_downscale_refused() -> None:
    data = encode(np.zeros((20, 5000), dtype=np.uint8), "PNG")
    with pytest.raises(ImageTooSmall, match="1024x4 px after downscaling 5000x20"):
        prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)


def test_smallest_accepted_image() -> None:
    data = encode(np.zeros((MIN_SIDE, MIN_SIDE, 3), dtype=np.uint8), "PNG")
    prepared = prepare_reference(data, max_pixels=MAX_PIXELS, max_side=1024)
    assert (prepared.width, prepared.height) == (MIN_SIDE, MIN_SIDE)


# --- size policy ---------------------------------------------------------------------------


def test_max_side_downscale_keeps_aspect() -> None:
    prepared = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=200)
    assert prepared.original_size == (451, 300)
    assert (prepared.width, prepared.height) == (200, round(300 * 200 / 451))
    assert prepared.resized
    assert prepared.tensor.is_contiguous()
    portrait = np.ascontiguousarray(CHELSEA.transpose(1, 0, 2))
    prepared = prepare_reference(encode(portrait, "PNG"), max_pixels=MAX_PIXELS, max_side=200)
    assert (prepared.width, prepared.height) == (round(300 * 200 / 451), 200)


def test_image_within_max_side_is_not_resized() -> None:
    prepared = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=451)
    assert not prepared.resized
    assert (prepared.width, prepared.height) == (451, 300)


def test_same_size_candidate_matches_reference() -> None:
    reference, candidate = prepare_pair(
        encode(CHELSEA, "PNG"),
        encode(CHELSEA[::-1].copy(), "PNG"),
        max_pixels=MAX_PIXELS,
        max_side=1024,
        size_policy="strict",
    )
    assert candidate.tensor.shape == reference.tensor.shape == (3, 300, 451)
    assert not candidate.resized


def test_same_size_candidate_downscaled_like_reference() -> None:
    reference, candidate = prepare_pair(
        encode(CHELSEA, "PNG"),
        encode(CHELSEA, "JPEG"),
        max_pixels=MAX_PIXELS,
        max_side=128,
        size_policy="strict",
    )
    assert candidate.tensor.shape == reference.tensor.shape == (3, 85, 128)
    assert reference.resized
    assert candidate.resized


def test_resize_policy_resizes_candidate_to_reference() -> None:
    reference, candidate = prepare_pair(
        encode(ASTRONAUT, "PNG"),
        encode(CHELSEA, "PNG"),
        max_pixels=MAX_PIXELS,
        max_side=256,
        size_policy="resize",
    )
    assert reference.tensor.shape == (3, 256, 256)
    assert candidate.tensor.shape == (3, 256, 256)
    assert candidate.original_size == (451, 300)
    assert candidate.resized
    expected = resize(chw(CHELSEA), (256, 256))
    torch.testing.assert_close(candidate.tensor, expected, atol=1e-6, rtol=0)


def test_strict_policy_refuses_different_sizes() -> None:
    with pytest.raises(SizeMismatch) as caught:
        prepare_pair(
            encode(ASTRONAUT, "PNG"),
            encode(CHELSEA, "PNG"),
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="strict",
        )
    assert "451x300" in str(caught.value)
    assert "512x512" in str(caught.value)


def test_strict_policy_compares_sizes_after_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(CHELSEA, "JPEG", exif=exif)  # displays as 300x451
    upright = encode(np.ascontiguousarray(np.rot90(CHELSEA, k=-1)), "PNG")
    reference, candidate = prepare_pair(
        upright, rotated, max_pixels=MAX_PIXELS, max_side=1024, size_policy="strict"
    )
    assert candidate.original_size == reference.original_size == (300, 451)
    with pytest.raises(SizeMismatch):
        prepare_pair(
            encode(CHELSEA, "PNG"),
            rotated,
            max_pixels=MAX_PIXELS,
            max_side=1024,
            size_policy="strict",
        )


def test_unknown_size_policy_refused() -> None:
    reference = prepare_reference(encode(CHELSEA, "PNG"), max_pixels=MAX_PIXELS, max_side=1024)
    with pytest.raises(InvalidRequest, match="size_policy"):
        prepare_candidate(
            encode(CHELSEA, "PNG"),
            reference,
            max_pixels=MAX_PIXELS,
            size_policy="stretch",  # type: ignore[arg-type]
        )


def test_prepared_image_is_frozen() -> None:
    prepared = PreparedImage(torch.zeros(3, 20, 30), (30, 20), resized=False)
    assert (prepared.width, prepared.height) == (30, 20)
    with pytest.raises(AttributeError):
        prepared.resized = True  # type: ignore[misc]


# --- resize --------------------------------------------------------------------------------


def test_resize_is_antialiased_bilinear_and_clamped() -> None:
    tensor = chw(ASTRONAUT)
    out = resize(tensor, (100, 150))
    expected = F.interpolate(
        tensor[None], size=(100, 150), mode="bilinear", antialias=True, align_corners=False
    )[0].clamp(0, 1)
    assert out.shape == (3, 100, 150)
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected)
    upscaled = resize(torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]).expand(3, 2, 2), (7, 9))
    assert upscaled.min() >= 0.0
    assert upscaled.max() <= 1.0


def test_resize_to_same_size_is_identity() -> None:
    tensor = chw(CHELSEA).contiguous()
    assert resize(tensor, (300, 451)) is tensor
    strided = chw(CHELSEA)  # a permuted view: made contiguous, values unchanged
    same = resize(strided, (300, 451))
    assert same.is_contiguous()
    assert torch.equal(same, strided)
