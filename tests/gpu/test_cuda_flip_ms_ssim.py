"""FLIP and MS-SSIM on CUDA (the whole batch at once) against the CPU (pair by pair) and the
reference implementations, with TF32 and autocast on around them. Skipped without CUDA (marked
``gpu``); run on a GPU machine with ``python -m pytest -m gpu tests/gpu``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from app.scores import flip, flip_map, ms_ssim
from devtools.images import distort, photo, to_tensor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CUDA = torch.device("cuda")


@pytest.fixture
def tf32_on() -> Iterator[None]:
    """The service's bf16/fp16 settings: TF32 allowed in products and convolutions."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def batch(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    names = ("astronaut", "chelsea", "coffee", "rocket")
    kinds = ("jpeg", "blur", "noise", "colour")
    references = [photo(name, side) for name in names]
    x = torch.stack([to_tensor(r) for r in references])
    y = torch.stack([to_tensor(distort(r, k)) for r, k in zip(references, kinds, strict=True)])
    y[1] = x[1]  # an equal pair among them
    return x, y


@pytest.mark.usefixtures("tf32_on")
def test_flip_on_cuda_is_the_cpu_flip_in_float32() -> None:
    x, y = batch(192)
    cpu = flip_map(x, y)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gpu = flip_map(x.to(CUDA), y.to(CUDA))
    assert gpu.dtype == torch.float32
    assert float((gpu.cpu() - cpu).abs().max()) < 3e-4  # the reference's own per-pixel bound
    assert not gpu[1].any()  # the equal pair: exactly 0
    np.testing.assert_allclose(
        flip(x.to(CUDA), y.to(CUDA)).cpu().numpy(), flip(x, y).numpy(), rtol=0, atol=1e-5
    )


@pytest.mark.usefixtures("tf32_on")
def test_ms_ssim_on_cuda_is_the_cpu_ms_ssim() -> None:
    x, y = batch(200)
    cpu = ms_ssim(x, y)
    with torch.autocast("cuda", dtype=torch.float16):
        gpu = ms_ssim(x.to(CUDA), y.to(CUDA)).cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), rtol=0, atol=1e-5)
    assert gpu[1].item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.usefixtures("tf32_on")
def test_tf32_settings_are_restored() -> None:
    x, y = batch(170)
    flip_map(x.to(CUDA), y.to(CUDA))
    ms_ssim(x.to(CUDA), y.to(CUDA))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
