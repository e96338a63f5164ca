"""FLIP's colour transforms against the step-by-step formulas in float64 (and an exact select)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.scores import colour

D65 = np.array([0.950428545, 1.0, 1.088900371])
RGB_TO_XYZ = np.array(
    [
        [10135552 / 24577794, 8788810 / 24577794, 4435075 / 24577794],
        [2613072 / 12288897, 8788810 / 12288897, 887015 / 12288897],
        [1425312 / 73733382, 8788810 / 73733382, 70074185 / 73733382],
    ]
)


def lab_f(t: np.ndarray) -> np.ndarray:
    delta = 6 / 29
    return np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4 / 29)


def planes(seed: int, shape: tuple[int, ...] = (3, 40, 30)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape)


def test_srgb_to_linear_is_the_iec_curve() -> None:
    v = np.linspace(0, 1, 1001)
    expected = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    got = colour.srgb_to_linear(torch.tensor(v, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), expected, rtol=2e-6, atol=1e-9)


def test_linear_rgb_to_ycxcz_and_back() -> None:
    rgb = planes(0)
    xyz = np.einsum("ij,jhw->ihw", RGB_TO_XYZ, rgb) / D65[:, None, None]
    expected = np.stack([116 * xyz[1] - 16, 500 * (xyz[0] - xyz[1]), 200 * (xyz[1] - xyz[2])])
    got = colour.apply("rgb_to_ycxcz", torch.tensor(rgb, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got[:3], expected, rtol=0, atol=2e-4)  # Y up to 100
    np.testing.assert_allclose(got[3], (expected[0] + 16) / 116, rtol=0, atol=2e-6)
    back = colour.apply("ycxcz_to_rgb", torch.tensor(expected, dtype=torch.float32))
    np.testing.assert_allclose(back.numpy(), rgb, rtol=0, atol=2e-6)


def test_cielab_with_the_hunt_adjustment() -> None:
    rgb = planes(1)
    scaled = np.einsum("ij,jhw->ihw", RGB_TO_XYZ, rgb) / D65[:, None, None]
    f = lab_f(scaled)
    lightness, a, b = 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    expected = np.stack([lightness, 0.01 * lightness * a, 0.01 * lightness * b])
    got = colour.apply("rgb_to_scaled_xyz", torch.tensor(rgb, dtype=torch.float32))
    lab = colour.hunt(colour.apply("lab", colour.lab_f(got)))
    np.testing.assert_allclose(lab.numpy(), expected, rtol=0, atol=1e-3)  # values up to ~100


def test_hyab_is_city_block_lightness_plus_euclidean_chroma() -> None:
    p = torch.tensor([[50.0], [3.0], [-4.0]])
    q = torch.tensor([[47.0], [0.0], [0.0]])
    assert colour.hyab(p, q).tolist() == [8.0]


def test_select_returns_either_value_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(10_000, generator=generator) * 1e3
    b = torch.randn(10_000, generator=generator) * 1e-3
    condition = torch.rand(10_000, generator=generator) > 0.5
    assert torch.equal(colour.select(condition, a, b), torch.where(condition, a, b))


@pytest.mark.parametrize("exponent", [2.4, 0.7, 1 / 3])
def test_power_agrees_with_pow(exponent: float) -> None:
    base = torch.rand(10_000, generator=torch.Generator().manual_seed(4))
    base[:3] = torch.tensor([0.0, 1.0, 1e-30])
    expected = base.double().pow(exponent)
    got = colour.power(base.clone(), exponent)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-30)
