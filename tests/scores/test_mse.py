"""MSE and PSNR against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.scores import mse, psnr
from devtools.images import distort, photo, to_tensor


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


@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_the_mse_of_a_pair_does_not_depend_on_its_batch(layout: str) -> None:
    """``mse`` is documented (and checked by the load test) as exact, whatever the batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 224, 224, generator=generator)
    y = (x + 0.03 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    if layout == "channels-last":
        x, y = (t.contiguous(memory_format=torch.channels_last) for t in (x, y))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # (one thread splits nothing: the difference needs two)
    try:
        alone = [mse(x[i : i + 1], y[i : i + 1]).item() for i in range(8)]
        moved = [
            (n, i)
            for n in range(2, 9)
            for i, value in enumerate(mse(x[:n], y[:n]).tolist())
            if value != alone[i]
        ]
    finally:
        torch.set_num_threads(threads)
    assert moved == []
