"""Regions of interest in each metric, against independent references on real photographs:
numpy for mse, scikit-image's full SSIM map for ssim, the README's formulas in float64 for vgg
and style; and the properties the contract promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from app.models.vgg import VGGFeatures
from app.scores import (
    VGG_TAP_WEIGHTS,
    composite,
    coverage,
    gram_matrices,
    gram_matrix,
    mse,
    ssim,
    style_distance,
    tap_weights,
    vgg_distance,
)
from devtools.images import distort, photo, to_tensor
from tests.support.reference import MaskedReferenceVGG

SIDE = 96


def masks(side: int = SIDE) -> dict[str, np.ndarray]:
    """Realistic regions: ignore a clock in a corner, an inpainted disc, a band."""
    yy, xx = np.mgrid[:side, :side]
    clock = np.ones((side, side), bool)
    clock[4:28, side - 40 : side - 4] = False
    disc = (yy - side / 2) ** 2 + (xx - side / 2.5) ** 2 < (side / 4) ** 2
    band = (yy > side // 3) & (yy < side // 3 + 20)
    return {"clock": clock, "disc": disc, "band": band}


def as_mask(region: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(region)[None, None]


@pytest.fixture(scope="module")
def masked_reference(weights_file: Path) -> MaskedReferenceVGG:
    return MaskedReferenceVGG(weights_file)


@pytest.mark.parametrize("region", ["clock", "disc", "band"])
@pytest.mark.parametrize("kind", ["jpeg", "noise", "colour"])
def test_masked_mse_is_numpys_masked_mean(region: str, kind: str) -> None:
    reference = photo("astronaut", SIDE)
    candidate = distort(reference, kind)
    inside = masks()[region]
    x, y = reference.astype(np.float64) / 255, candidate.astype(np.float64) / 255
    expected = float(((x - y) ** 2)[inside].mean())
    ours = mse(to_tensor(reference)[None], to_tensor(candidate)[None], mask=as_mask(inside))
    assert ours.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("region", ["clock", "disc", "band"])
@pytest.mark.parametrize("kind", ["jpeg", "blur", "noise"])
def test_masked_ssim_is_scikit_images_map_over_the_masked_centres(region: str, kind: str) -> None:
    reference = photo("coffee", SIDE)
    candidate = distort(reference, kind)
    inside = masks()[region]
    _, full = structural_similarity(
        reference.astype(np.float64) / 255,
        candidate.astype(np.float64) / 255,
        channel_axis=2,
        data_range=1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    centres = np.zeros_like(inside)
    centres[5:-5, 5:-5] = inside[5:-5, 5:-5]
    expected = float(full[centres].mean())
    ours = ssim(to_tensor(reference)[None], to_tensor(candidate)[None], mask=as_mask(inside))
    assert ours.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(("region", "name"), [("clock", "astronaut"), ("disc", "chelsea")])
def test_masked_vgg_and_style_follow_the_formulas(
    extractor: VGGFeatures, masked_reference: MaskedReferenceVGG, region: str, name: str
) -> None:
    reference = photo(name, SIDE)
    candidate = distort(reference, "jpeg")
    inside = masks()[region]
    x, y = to_tensor(reference), to_tensor(candidate)
    with torch.inference_mode():
        fx, fy = extractor(x[None]), extractor(y[None])
        mask = as_mask(inside)
        vgg, vgg_layers = vgg_distance(fx, fy, mask=mask)
        gx, gy = gram_matrices(fx, mask=mask), gram_matrices(fy, mask=mask)
        style, style_layers = style_distance(gx, gy)
    expected_vgg_layers, expected_style_layers = masked_reference.masked(
        x, y, torch.from_numpy(inside)
    )
    expected_vgg = sum(w * v for w, v in zip(VGG_TAP_WEIGHTS, expected_vgg_layers, strict=True))
    assert vgg.item() == pytest.approx(expected_vgg, rel=1e-4)
    assert style.item() == pytest.approx(sum(expected_style_layers), rel=1e-4)
    np.testing.assert_allclose(vgg_layers[0].numpy(), expected_vgg_layers, rtol=1e-4)
    np.testing.assert_allclose(style_layers[0].numpy(), expected_style_layers, rtol=1e-4)


def test_tap_weights_are_the_fraction_of_each_cell_inside() -> None:
    inside = np.zeros((16, 16), bool)
    inside[:4, :6] = True  # a 4 x 6 block
    (full, half, quarter) = tap_weights(as_mask(inside), [(16, 16), (8, 8), (4, 4)])
    assert torch.equal(full[0, 0], torch.from_numpy(inside).float())
    assert half[0, 0, :2, :3].eq(1).all() and half[0, 0, 2:].eq(0).all()
    assert quarter[0, 0, 0, 1].item() == pytest.approx(0.5)  # columns 4-7: 2 of 4 inside


def test_all_ones_weights_equal_no_mask() -> None:
    features = torch.rand(2, 8, 6, 5)
    ones = torch.ones(2, 1, 6, 5)
    assert torch.allclose(gram_matrix(features, ones), gram_matrix(features), atol=1e-7)
    other = torch.rand(2, 8, 6, 5)
    total, _ = vgg_distance([features] * 5, [other] * 5, mask=ones.bool())
    plain, _ = vgg_distance([features] * 5, [other] * 5)
    assert torch.allclose(total, plain, rtol=1e-6)


def test_weighted_gram_is_per_sample_and_layout_free() -> None:
    features = torch.rand(3, 8, 5, 7)
    weights = torch.rand(3, 1, 5, 7)
    batched = gram_matrix(features, weights)
    for i in range(3):
        f = features[i].reshape(8, 35).double()
        w = weights[i].reshape(35).double()
        expected = (f @ torch.diag(w) @ f.T / (8 * w.sum())).float()
        assert torch.allclose(batched[i], expected, atol=1e-6)
    channels_last = features.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(gram_matrix(channels_last, weights), batched, atol=1e-6)


def test_composite_takes_the_candidate_inside_only() -> None:
    x, y = torch.zeros(3, 4, 4), torch.ones(3, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 1:3, 1:3] = True
    out = composite(x, y, mask)
    assert out.sum().item() == 3 * 4
    assert coverage(mask) == 0.25
