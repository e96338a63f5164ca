"""SSIM against scikit-image on real photographs, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from app.scores import ssim, ssim_map
from app.scores.ssim import gaussian_window, reference_moments
from devtools.images import distort, photo, to_tensor

PHOTOS = ("astronaut", "chelsea", "coffee")
DISTORTIONS = ("jpeg", "blur", "noise", "colour")


def skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    return float(
        structural_similarity(
            x.astype(np.float64) / 255,
            y.astype(np.float64) / 255,
            channel_axis=2,
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("kind", DISTORTIONS)
def test_ssim_matches_scikit_image(name: str, kind: str) -> None:
    reference = photo(name)
    candidate = distort(reference, kind)
    ours = ssim(to_tensor(reference)[None], to_tensor(candidate)[None]).item()
    assert ours == pytest.approx(skimage_ssim(reference, candidate), abs=1e-5)


def test_ssim_batch_rows_match_scikit_image_each() -> None:
    refs = [photo(n, 128) for n in PHOTOS]
    cands = [distort(r, k) for r, k in zip(refs, DISTORTIONS, strict=False)]
    ours = ssim(
        torch.stack([to_tensor(r) for r in refs]), torch.stack([to_tensor(c) for c in cands])
    )
    expected = [skimage_ssim(r, c) for r, c in zip(refs, cands, strict=True)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_ssim_identity_is_one() -> None:
    x = to_tensor(photo("astronaut", 64))[None]
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_symmetry() -> None:
    x = to_tensor(photo("chelsea", 96))[None]
    y = to_tensor(distort(photo("chelsea", 96), "noise"))[None]
    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-6)


def test_ssim_with_cached_reference_moments_is_the_same() -> None:
    x = to_tensor(photo("coffee", 96))[None]
    y = to_tensor(distort(photo("coffee", 96), "blur"))[None]
    assert ssim(x, y, x_moments=reference_moments(x)).item() == pytest.approx(
        ssim(x, y).item(), abs=1e-7
    )


def test_ssim_map_covers_the_valid_region() -> None:
    x = torch.rand(2, 3, 40, 30)
    assert ssim_map(x, x).shape == (2, 3, 30, 20)


def test_gaussian_window_is_normalised_and_symmetric() -> None:
    w = gaussian_window()
    assert w.numel() == 11
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-7)
    assert torch.allclose(w, w.flip(0))


def test_ssim_refuses_shape_mismatch_and_tiny_images() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 10, 32), torch.rand(1, 3, 10, 32))
