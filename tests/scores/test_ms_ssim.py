"""MS-SSIM against pytorch_msssim 1.0.0 (float64) on real photographs, the smallest size it
takes, masks by their stated rule (an independent float64 implementation), and its properties."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as reference_ms_ssim

from app.errors import ImageTooSmall, ImageTooSmallForScore
from app.scores import ms_ssim, ms_ssim_against, scale_centres
from app.scores.ms_ssim import MIN_SIDE, WEIGHTS, check_size
from devtools.images import distort, photo, to_tensor

TOLERANCE = 1e-5  # the bound; measured: under 1e-6 (float32 against float64)

CASES = (
    ("astronaut", "jpeg", None),
    ("coffee", "noise", None),
    ("chelsea", "blur", None),
    ("rocket", "colour", None),
    ("rocket", "jpeg", (161, 203)),
    ("coffee", "noise", (203, 161)),
    ("astronaut", "blur", (161, 161)),
)


def pair(
    name: str, kind: str, crop: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    reference = photo(name)
    candidate = distort(reference, kind)
    if crop is not None:
        reference, candidate = reference[: crop[0], : crop[1]], candidate[: crop[0], : crop[1]]
    return to_tensor(reference)[None], to_tensor(candidate)[None]


def expected(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    values: torch.Tensor = reference_ms_ssim(
        x.double(), y.double(), data_range=1, size_average=False
    )
    return values


@pytest.mark.parametrize(("name", "kind", "crop"), CASES)
def test_ms_ssim_matches_pytorch_msssim(name: str, kind: str, crop: tuple[int, int] | None) -> None:
    x, y = pair(name, kind, crop)
    got = ms_ssim(x, y)
    assert got.dtype == torch.float64 and got.shape == (1,)
    assert got.item() == pytest.approx(expected(x, y).item(), abs=TOLERANCE)


def test_identical_images_give_one() -> None:
    x, _ = pair("chelsea", "noise", (161, 203))
    assert ms_ssim(x, x.clone()).item() == pytest.approx(1.0, abs=1e-6)


def test_one_reference_against_many_candidates_is_each_pair_alone() -> None:
    """``ms_ssim_against`` filters the shared reference once; each candidate's value is the
    pair's own (masked too), and matches pytorch_msssim."""
    x, _ = pair("coffee", "jpeg", (200, 230))
    image = photo("coffee")[:200, :230]
    y = torch.cat([to_tensor(distort(image, kind))[None] for kind in ("jpeg", "noise", "blur")])
    shared = ms_ssim_against(x, y)
    assert shared.shape == (3,) and shared.dtype == torch.float64
    repeated = ms_ssim(x.expand_as(y), y)
    torch.testing.assert_close(shared, repeated, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        shared.numpy(), expected(x.expand_as(y), y).numpy(), rtol=0, atol=TOLERANCE
    )
    mask = torch.zeros(3, 1, 200, 230, dtype=torch.bool)
    mask[:, :, 20:180, 30:200] = True
    mask[1, :, 100:, :] = False  # masks differ per candidate
    torch.testing.assert_close(
        ms_ssim_against(x, y, mask=mask), ms_ssim(x.expand_as(y), y, mask=mask), rtol=0, atol=1e-12
    )
    with pytest.raises(ValueError, match="reference"):
        ms_ssim_against(x.expand_as(y), y)


def test_a_pair_scores_the_same_alone_and_in_any_batch() -> None:
    """Each plane's columns start at a multiple of the filter's block and the sums run in one
    order per pair: a batch gives each pair what it gets alone (the same bits on the machines
    measured; the bound leaves the BLAS room on others)."""
    pairs = [pair(n, k, (170, 190)) for n, k in (("astronaut", "jpeg"), ("coffee", "blur"))]
    pairs += [pair("chelsea", "colour", (170, 190)), pair("rocket", "noise", (170, 190))]
    x = torch.cat([p[0] for p in pairs])
    y = torch.cat([p[1] for p in pairs])
    batch = ms_ssim(x, y)
    for index in range(4):
        alone = ms_ssim(x[index : index + 1], y[index : index + 1])
        torch.testing.assert_close(alone, batch[index : index + 1], rtol=0, atol=1e-9)
    torch.testing.assert_close(ms_ssim(x.flip(0), y.flip(0)), batch.flip(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(batch.numpy(), expected(x, y).numpy(), rtol=0, atol=TOLERANCE)


def test_strips_do_not_change_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    ms_ssim_module = sys.modules["app.scores.ms_ssim"]
    x, y = pair("astronaut", "jpeg", (300, 260))
    mask = torch.zeros(1, 1, 300, 260, dtype=torch.bool)
    mask[:, :, 20:250, 30:170] = True
    strips = ms_ssim(x, y), ms_ssim(x, y, mask=mask)
    monkeypatch.setattr(ms_ssim_module, "STRIP_ROWS", 10_000)
    torch.testing.assert_close(ms_ssim(x, y), strips[0], rtol=0, atol=1e-9)
    torch.testing.assert_close(ms_ssim(x, y, mask=mask), strips[1], rtol=0, atol=1e-9)


@pytest.mark.parametrize("size", [(160, 400), (400, 160), (100, 100), (16, 16)])
def test_images_under_161_px_are_refused_naming_the_minimum_and_the_size(
    size: tuple[int, int],
) -> None:
    height, width = size
    with pytest.raises(ImageTooSmallForScore) as raised:
        ms_ssim(torch.rand(1, 3, height, width), torch.rand(1, 3, height, width))
    message = str(raised.value)
    assert "161 px" in message and f"{width}x{height}" in message and "ms_ssim" in message
    assert raised.value.minimum_px == MIN_SIDE == 161
    assert isinstance(raised.value, ImageTooSmall)  # the 422 of app.api.errors
    with pytest.raises(ValueError, match="161"):
        check_size(height, width)


def test_161_px_is_the_smallest_side_taken() -> None:
    check_size(161, 161)
    x = torch.rand(2, 3, 161, 161, generator=torch.Generator().manual_seed(0))
    y = (x + 0.05 * torch.rand(2, 3, 161, 161, generator=torch.Generator().manual_seed(1))).clamp(
        0, 1
    )
    np.testing.assert_allclose(ms_ssim(x, y).numpy(), expected(x, y).numpy(), atol=TOLERANCE)


def test_ms_ssim_is_computed_in_float32_under_autocast() -> None:
    x, y = pair("coffee", "jpeg", (180, 200))
    plain = ms_ssim(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(ms_ssim(x, y), plain)


# Masks: an independent float64 implementation of the stated rule.


def masked_reference(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """One pair, float64: moments by a 2-D Gaussian convolution, the mask pooled as the images,
    each scale's means over the valid positions whose pooled mask is above 0."""
    offsets = torch.arange(11, dtype=torch.float32) - 5  # float32 taps, as pytorch_msssim's
    g = torch.exp(-(offsets**2) / (2 * 1.5**2))
    g = (g / g.sum()).double()
    window = torch.outer(g, g)
    kernel = window.expand(3, 1, 11, 11)
    x, y, m = x.double(), y.double(), mask.double()
    per_channel = torch.ones(3, dtype=torch.float64)
    for scale, weight in enumerate(WEIGHTS):
        if scale:
            x, y, m = (F.avg_pool2d(t, 2, padding=[s % 2 for s in t.shape[-2:]]) for t in (x, y, m))

        def blur(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(t, kernel, groups=3)[0]

        mu_x, mu_y = blur(x), blur(y)
        sxx, syy = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
        sxy = blur(x * y) - mu_x * mu_y
        c1, c2 = 0.01**2, 0.03**2
        value = (2 * sxy + c2) / (sxx + syy + c2)
        if scale == len(WEIGHTS) - 1:
            value = value * (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
        inside = m[0, 0, 5:-5, 5:-5] > 0
        means = torch.stack([channel[inside].mean() for channel in value])
        per_channel = per_channel * means.clamp_min(0) ** weight
    return float(per_channel.mean())


def test_the_independent_reference_agrees_with_pytorch_msssim_without_a_mask() -> None:
    x, y = pair("coffee", "jpeg", (200, 230))
    full = torch.ones(1, 1, 200, 230)
    assert masked_reference(x, y, full) == pytest.approx(expected(x, y).item(), abs=1e-12)


def regions(height: int, width: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:height, :width]
    return {
        "disc": (yy - height / 2) ** 2 + (xx - width / 2.5) ** 2 < (min(height, width) / 3) ** 2,
        "band": (yy > height // 3) & (yy < height // 3 + 70),
        "clock": ~((yy < 40) & (xx > width - 60)),
    }


@pytest.mark.parametrize("region", ["disc", "band", "clock"])
def test_masked_ms_ssim_follows_its_rule(region: str) -> None:
    x, y = pair("astronaut", "jpeg", (221, 243))
    mask = torch.from_numpy(regions(221, 243)[region])[None, None]
    got = ms_ssim(x, y, mask=mask).item()
    assert got == pytest.approx(masked_reference(x, y, mask), abs=TOLERANCE)
    assert got != pytest.approx(ms_ssim(x, y).item(), abs=1e-4)  # the mask changed something


def test_a_full_mask_gives_the_unmasked_value() -> None:
    x, y = pair("chelsea", "noise", (181, 199))
    full = torch.ones(1, 1, 181, 199, dtype=torch.bool)
    assert ms_ssim(x, y, mask=full).item() == pytest.approx(ms_ssim(x, y).item(), abs=1e-12)


def test_scale_centres_follow_a_pixel_down_the_scales() -> None:
    """One mask pixel at (row 81, column 85) of a 163 x 170 image: at each scale, the cell
    holding it (odd sides are padded by one before halving) is the one window centre."""
    mask = torch.zeros(1, 1, 163, 170, dtype=torch.bool)
    mask[0, 0, 81, 85] = True
    row, column, height, width = 81, 85, 163, 170
    for scale, centres in enumerate(scale_centres(mask)):
        if scale:
            row, column = (row + height % 2) // 2, (column + width % 2) // 2
            height, width = (height + height % 2) // 2, (width + width % 2) // 2
        assert centres.shape == (1, 1, height - 10, width - 10)
        assert centres.nonzero().tolist() == [[0, 0, row - 5, column - 5]]


def test_a_mask_near_the_border_leaves_a_scale_without_centres() -> None:
    mask = torch.zeros(1, 1, 200, 200, dtype=torch.bool)
    mask[0, 0, 190:, 190:] = True  # inside at scale 1, outside every window at scale 5
    centres = scale_centres(mask)
    assert bool(centres[0].any()) and not bool(centres[-1].any())
    x, y = pair("coffee", "noise", (200, 200))
    assert np.isnan(ms_ssim(x, y, mask=mask).item())
