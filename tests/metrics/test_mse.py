"""MSE and PSNR against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.metrics import mse, psnr
from tests.support.images import distort, photo, to_tensor


@pytest.mark.parametrize("kind", ["jpeg", "blur", "noise", "colour"])
def test_mse_and_psnr_match_numpy(kind: str) -> None:
    reference = photo("astronaut", 128)
    candidate = distort(reference, kind)
    x = reference.astype(np.float64) / 255
    y = candidate.astype(np.float64) / 255
    expected = float(np.mean((x - y) ** 2))
    ours = mse(to_tensor(reference)[None], to_tensor(candidate)[None])
    assert ours.item() == pytest.approx(expected, rel=1e-6)
    assert psnr(ours).item() == pytest.approx(10 * math.log10(1 / expected), rel=1e-6)


def test_identical_images_have_zero_mse_and_infinite_psnr() -> None:
    x = to_tensor(photo("coffee", 64))[None]
    errors = mse(x, x)
    assert errors.item() == 0.0
    assert math.isinf(psnr(errors).item())


def test_mse_is_per_pair_and_symmetric() -> None:
    x = torch.rand(3, 3, 20, 20)
    y = torch.rand(3, 3, 20, 20)
    per_pair = mse(x, y)
    assert per_pair.shape == (3,)
    assert torch.allclose(per_pair, mse(y, x))
    assert per_pair[1].item() == pytest.approx(mse(x[1:2], y[1:2]).item(), rel=1e-12)


def test_mse_refuses_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        mse(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
