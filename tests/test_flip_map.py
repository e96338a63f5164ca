"""The FLIP error map PNG against the reference tool's magma rendering (flip-evaluator 1.7)."""

from __future__ import annotations

import flip_evaluator
import numpy as np
import pytest
import torch

from app.flip_map import MAP_KIND, MAP_RANGE, colorize, flip_map_png, magma_lut
from app.scores import flip_map
from devtools.images import decode_png, distort, photo, to_tensor


def reference_maps(name: str, kind: str, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(our inputs' uint8 reference, the tool's error map (H, W), its magma image as 8-bit)."""
    reference = photo(name, side)
    candidate = distort(reference, kind)
    ref = np.ascontiguousarray(reference.astype(np.float32) / 255)
    cand = np.ascontiguousarray(candidate.astype(np.float32) / 255)
    errors, _, _ = flip_evaluator.evaluate(ref, cand, "LDR", applyMagma=False)
    magma, _, _ = flip_evaluator.evaluate(ref, cand, "LDR", applyMagma=True)
    as_png = (np.float32(255) * np.clip(magma, 0, 1) + np.float32(0.5)).astype(np.uint8)
    return candidate, errors[..., 0], as_png  # 8-bit as the tool's PNG writer stores it


@pytest.mark.parametrize(("name", "kind"), [("astronaut", "jpeg"), ("coffee", "noise")])
def test_the_colours_of_the_tools_errors_are_the_tools(name: str, kind: str) -> None:
    _, errors, expected = reference_maps(name, kind, 128)
    assert np.array_equal(colorize(torch.from_numpy(errors)), expected)


def test_the_lut_is_the_tools_magma_entry_for_entry() -> None:
    """Values k / 255 pick entry k, so the tool's colours of a ramp give its whole table."""
    lut = magma_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[0].tolist() == [0, 0, 4] and lut[-1].tolist() == [252, 253, 191]
    _, errors, expected = reference_maps("chelsea", "blur", 96)
    indices = np.floor(errors.astype(np.float32) * np.float32(255) + np.float32(0.5)).astype(int)
    seen = np.unique(indices)
    assert len(seen) > 100  # a good part of the table is checked against the tool
    for index in seen:
        assert lut[index].tolist() == expected[indices == index][0].tolist()
    ramp = torch.arange(256, dtype=torch.float32).div(255).view(16, 16)
    assert np.array_equal(colorize(ramp).reshape(256, 3), lut)


def test_our_map_draws_as_the_tools_map() -> None:
    """From our error values: the same colour except where float32 rounding moved a value
    across an entry boundary (then the next entry)."""
    candidate, _, expected = reference_maps("astronaut", "jpeg", 128)
    reference = photo("astronaut", 128)
    errors = flip_map(to_tensor(reference)[None], to_tensor(candidate)[None])
    drawn = decode_png(flip_map_png(errors))
    assert drawn.shape == expected.shape
    differs = (drawn != expected).any(axis=2)
    assert differs.mean() < 0.01
    lut = magma_lut().astype(int)
    ours = np.floor(errors[0, 0].numpy() * np.float32(255) + np.float32(0.5)).astype(int)
    for r, c in zip(*np.nonzero(differs), strict=True):
        neighbours = lut[max(ours[r, c] - 1, 0) : ours[r, c] + 2]
        assert (neighbours == expected[r, c]).all(axis=1).any()


def test_the_png_is_at_the_compared_size() -> None:
    errors = torch.rand(1, 1, 37, 53, generator=torch.Generator().manual_seed(0))
    for shape in ((37, 53), (1, 37, 53), (1, 1, 37, 53)):
        assert decode_png(flip_map_png(errors.reshape(shape))).shape == (37, 53, 3)


def test_values_outside_the_range_are_clamped_and_nan_is_zero() -> None:
    lut = magma_lut()
    drawn = colorize(torch.tensor([[-0.5, 0.0, 1.0, 7.0, float("nan")]]))
    assert drawn[0].tolist() == [lut[0].tolist(), lut[0].tolist()] + [lut[255].tolist()] * 2 + [
        lut[0].tolist()
    ]
    assert (MAP_KIND, MAP_RANGE) == ("flip", (0.0, 1.0))


@pytest.mark.parametrize("shape", [(2, 8, 8), (2, 1, 8, 8), (8,)])
def test_one_map_at_a_time(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="one"):
        flip_map_png(torch.zeros(shape))
