"""Tests for app.difference_map: the viridis table, the two map kinds, the colour scale, PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.difference_map import (
    abs_difference,
    colorize,
    difference_map_png,
    local_ssim,
    viridis_lut,
)
from app.scores.ssim import ssim, ssim_map
from app.vocabulary import MAP_RANGES
from devtools.images import decode_png, photo

# matplotlib's viridis at entries 0, 64, 128, 192 and 255 (8-bit sRGB).
VIRIDIS_SAMPLES = {
    0: (68, 1, 84),
    64: (59, 82, 139),
    128: (33, 145, 140),
    192: (94, 201, 98),
    255: (253, 231, 37),
}


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)


def srgb_lightness(rgb: np.ndarray) -> np.ndarray:
    """CIE L* of 8-bit sRGB colours (D65)."""
    c = rgb.astype(np.float64) / 255
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    y = linear @ np.array([0.2126, 0.7152, 0.0722])
    f = np.where(y > (6 / 29) ** 3, np.cbrt(y), y / (3 * (6 / 29) ** 2) + 4 / 29)
    lightness: np.ndarray = 116 * f - 16
    return lightness


def test_viridis_lut_matches_matplotlib_samples() -> None:
    lut = viridis_lut()
    assert lut.shape == (256, 3)
    assert lut.dtype == np.uint8
    for index, rgb in VIRIDIS_SAMPLES.items():
        assert np.abs(lut[index].astype(int) - np.array(rgb)).max() <= 2, index


def test_viridis_lightness_rises_evenly() -> None:
    """Perceptually uniform: L* rises monotonically (up to 8-bit rounding), in even steps."""
    lightness = srgb_lightness(viridis_lut())
    assert (np.diff(lightness) > -0.05).all()
    coarse = np.diff(lightness[::16])
    assert (coarse > 0).all()
    assert coarse.max() < 1.5 * coarse.min()


def test_abs_difference_is_the_channel_mean_of_absolute_differences() -> None:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 20, 30, generator=generator)
    expected = (x - y).abs().mean(0)
    assert torch.allclose(abs_difference(x, y), expected)
    assert abs_difference(x, y).shape == (20, 30)


def test_abs_difference_of_black_and_white_is_one() -> None:
    assert torch.equal(
        abs_difference(torch.zeros(3, 16, 16), torch.ones(3, 16, 16)), torch.ones(16, 16)
    )


def test_local_ssim_covers_the_image_and_keeps_the_valid_map_at_the_corners() -> None:
    x = tensor(photo("astronaut", 64, keep_aspect=True))
    y = x.flip(-1)  # the mirror image: alike in places, unlike in others
    full = local_ssim(x, y)
    valid = ssim_map(x[None], y[None]).mean(1)[0]
    assert full.shape == x.shape[1:]
    # Aligned corners: the first and last valid windows land on the image's corners.
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert full[i, j].item() == pytest.approx(valid[i, j].item(), abs=1e-6)
    # The valid map's mean is the ssim score; the stretched map stays close to it.
    assert valid.mean().item() == pytest.approx(ssim(x[None], y[None]).item(), abs=1e-6)
    assert full.min() >= valid.min() - 1e-6
    assert full.max() <= valid.max() + 1e-6


def test_local_ssim_of_identical_images_is_one_everywhere() -> None:
    x = tensor(photo("chelsea", 48, keep_aspect=True))
    assert torch.allclose(local_ssim(x, x), torch.ones(x.shape[1:]), atol=1e-5)


def test_local_ssim_is_low_where_the_images_differ() -> None:
    x = tensor(photo("astronaut", 64, keep_aspect=True))
    y = x.clone()
    y[:, 40:60, 40:60] = 1 - y[:, 40:60, 40:60]
    m = local_ssim(x, y)
    assert m[50, 50] < 0.5
    assert m[10, 10] > 0.99


def test_colorize_maps_the_range_ends_to_the_first_and_last_colours() -> None:
    lut = viridis_lut()
    values = torch.tensor([[-0.5, 0.0, 0.5, 1.0, 2.0, float("nan")]])
    rgb = colorize(values, 0.0, 1.0)
    assert rgb.shape == (1, 6, 3)
    assert (rgb[0, 0] == lut[0]).all()
    assert (rgb[0, 1] == lut[0]).all()
    assert (rgb[0, 2] == lut[128]).all()  # round(127.5) = 128
    assert (rgb[0, 3] == lut[255]).all()
    assert (rgb[0, 4] == lut[255]).all()
    assert (rgb[0, 5] == lut[0]).all()


def test_colorize_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        colorize(torch.zeros(2, 2), 1.0, 1.0)


@pytest.mark.parametrize(("kind", "index"), [("abs", 0), ("ssim", 255)])
def test_map_of_identical_images_is_one_colour(kind: str, index: int) -> None:
    x = tensor(photo("coffee", 40, keep_aspect=True))
    png = difference_map_png(x, x.clone(), kind)  # type: ignore[arg-type]
    rgb = decode_png(png)
    assert rgb.shape == (x.shape[1], x.shape[2], 3)
    assert (rgb == viridis_lut()[index]).all()


def test_map_ranges_are_documented_fixed_ranges() -> None:
    assert MAP_RANGES == {
        "ssim": (0.0, 1.0),
        "abs": (0.0, 1.0),
        "lpips": (0.0, 1.0),
        "lpips_vgg": (0.0, 1.0),
        "flip": (0.0, 1.0),
    }


@pytest.mark.parametrize(
    ("x_shape", "y_shape"), [((3, 16, 16), (3, 16, 17)), ((1, 16, 16), (1, 16, 16))]
)
def test_maps_refuse_mismatched_or_non_rgb_tensors(
    x_shape: tuple[int, ...], y_shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="of one shape"):
        difference_map_png(torch.zeros(x_shape), torch.zeros(y_shape), "abs")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        difference_map_png(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), "mse")  # type: ignore[arg-type]
