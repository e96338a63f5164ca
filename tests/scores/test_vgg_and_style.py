"""VGG and style distances against a float64 implementation of the article's formulas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.models.vgg import VGGFeatures
from app.scores import gram_matrix, style_distance, vgg_distance
from devtools.images import distort, photo, to_tensor
from tests.support.reference import ReferenceVGG


@pytest.fixture(scope="module")
def reference_vgg(weights_file: Path) -> ReferenceVGG:
    return ReferenceVGG(weights_file)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
@pytest.mark.parametrize("kind", ["jpeg", "blur", "noise", "colour"])
def test_vgg_and_style_match_the_formulas(
    extractor: VGGFeatures, reference_vgg: ReferenceVGG, name: str, kind: str
) -> None:
    reference = photo(name, 96)
    candidate = distort(reference, kind)
    x, y = to_tensor(reference), to_tensor(candidate)
    with torch.inference_mode():
        fx, fy = extractor(x[None]), extractor(y[None])
        vgg, vgg_layers = vgg_distance(fx, fy)
        style, style_layers = style_distance(
            [gram_matrix(t) for t in fx], [gram_matrix(t) for t in fy]
        )
    expected_vgg, expected_vgg_layers = reference_vgg.vgg(x, y)
    expected_style, expected_style_layers = reference_vgg.style(x, y)
    assert vgg.item() == pytest.approx(expected_vgg, rel=1e-4)
    assert style.item() == pytest.approx(expected_style, rel=1e-4)
    np.testing.assert_allclose(vgg_layers[0].numpy(), expected_vgg_layers, rtol=1e-4)
    np.testing.assert_allclose(style_layers[0].numpy(), expected_style_layers, rtol=1e-4)


def test_gram_is_per_sample_not_mixed_across_the_batch() -> None:
    features = torch.rand(3, 8, 5, 7)
    batched = gram_matrix(features)
    for i in range(3):
        f = features[i].reshape(8, 35).double()
        expected = (f @ f.T / (8 * 35)).float()
        assert torch.allclose(batched[i], expected, atol=1e-6)


def test_gram_is_the_same_in_channels_last_layout() -> None:
    features = torch.rand(2, 16, 9, 11)
    assert torch.allclose(
        gram_matrix(features),
        gram_matrix(features.contiguous(memory_format=torch.channels_last)),
        atol=1e-6,
    )


def test_gram_is_normalised_for_image_size() -> None:
    small = torch.rand(1, 4, 8, 8)
    tiled = small.repeat(1, 1, 4, 4)  # the same statistics over 16x the pixels
    assert torch.allclose(gram_matrix(small), gram_matrix(tiled), rtol=1e-5)


def test_vgg_total_is_the_weighted_sum_of_layers() -> None:
    fx = [torch.rand(2, 4, 6, 6) for _ in range(5)]
    fy = [torch.rand(2, 4, 6, 6) for _ in range(5)]
    total, per_tap = vgg_distance(fx, fy)
    weights = torch.tensor([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0])
    assert torch.allclose(total, (per_tap * weights).sum(1))


def test_distances_are_zero_for_identical_and_symmetric(extractor: VGGFeatures) -> None:
    x = to_tensor(photo("astronaut", 64))[None]
    y = to_tensor(distort(photo("astronaut", 64), "noise"))[None]
    with torch.inference_mode():
        fx, fy = extractor(x), extractor(y)
        gx, gy = [gram_matrix(t) for t in fx], [gram_matrix(t) for t in fy]
        assert vgg_distance(fx, fx)[0].item() == 0.0
        assert style_distance(gx, gx)[0].item() == 0.0
        assert vgg_distance(fx, fy)[0].item() == pytest.approx(vgg_distance(fy, fx)[0].item())
        assert style_distance(gx, gy)[0].item() == pytest.approx(style_distance(gy, gx)[0].item())
