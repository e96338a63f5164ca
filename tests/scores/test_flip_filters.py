"""FLIP's filter taps against the paper's formulas in float64, and their shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.scores.flip_filters import feature_radius, feature_taps, spatial_radius, spatial_taps
from app.scores.flip_viewing import DEFAULT_PPD


def gaussian(x: np.ndarray, a: float, b: float) -> np.ndarray:
    values: np.ndarray = a * np.sqrt(np.pi / b) * np.exp(-(np.pi**2) * x**2 / b)
    return values


@pytest.mark.parametrize("ppd", [DEFAULT_PPD, 4.5, 30.0, 150.0])
def test_spatial_taps_follow_the_contrast_sensitivity_functions(ppd: float) -> None:
    radius = math.ceil(3 * math.sqrt(0.04 / (2 * math.pi**2)) * ppd)
    taps = spatial_taps(ppd)
    assert spatial_radius(ppd) == radius
    assert taps.shape == (4, 2 * radius + 1) and taps.dtype == np.float32
    x = np.arange(-radius, radius + 1) / ppd
    luma, red_green = gaussian(x, 1, 0.0047), gaussian(x, 1, 0.0053)
    np.testing.assert_allclose(taps[0], luma / luma.sum(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(taps[1], red_green / red_green.sum(), rtol=1e-5, atol=1e-8)
    # Cz: a sum of two 2-D Gaussians a sqrt(pi / b) exp(-pi^2 (x^2 + y^2) / b), each the outer
    # product of sqrt(a sqrt(pi / b)) exp(-pi^2 x^2 / b) with itself, scaled to sum to 1.
    first, second = (
        np.sqrt(a * np.sqrt(np.pi / b)) * np.exp(-(np.pi**2) * x**2 / b)
        for a, b in ((34.1, 0.04), (13.5, 0.025))
    )
    scale = 1 / math.sqrt(first.sum() ** 2 + second.sum() ** 2)
    np.testing.assert_allclose(taps[2], first * scale, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(taps[3], second * scale, rtol=1e-5, atol=1e-8)
    two_d = np.outer(taps[2], taps[2]) + np.outer(taps[3], taps[3])
    assert two_d.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("ppd", [DEFAULT_PPD, 4.5, 30.0, 150.0])
def test_feature_taps_are_normalised_gaussian_derivatives(ppd: float) -> None:
    sigma = 0.5 * 0.082 * ppd
    radius = math.ceil(3 * sigma)
    assert feature_radius(ppd) == radius <= spatial_radius(ppd)
    taps = feature_taps(ppd)
    pad = spatial_radius(ppd) - radius
    assert taps.shape == (3, 2 * spatial_radius(ppd) + 1)
    assert not taps[:, :pad].any() and not taps[:, taps.shape[1] - pad :].any()
    core = taps[:, pad : taps.shape[1] - pad]
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    dg, ddg = -x * g, (x**2 / sigma**2 - 1) * g

    def signed(v: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = np.where(v > 0, v / v[v > 0].sum(), v / -v[v < 0].sum())
        return scaled

    np.testing.assert_allclose(core[0], g / g.sum(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(core[1], signed(dg), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(core[2], signed(ddg), rtol=1e-5, atol=1e-8)


def test_default_viewing_conditions_give_the_reference_filter_sizes() -> None:
    assert (spatial_radius(DEFAULT_PPD), feature_radius(DEFAULT_PPD)) == (10, 9)


def test_taps_are_read_only() -> None:
    with pytest.raises(ValueError, match="read-only"):
        spatial_taps(DEFAULT_PPD)[0, 0] = 1.0
