"""FLIP's 1-D filter taps for a given ppd, computed as the reference implementation does.

Built in float32 arithmetic in the reference's order of operations (``FLIP.h`` of NVIDIA's
``flip-evaluator`` 1.7: ``calculateSpatialFilterRadius``, ``setSpatialFilters``,
``setFeatureFilter``), so the taps equal the reference's to the last bit or so.

Spatial (contrast sensitivity) filters, in degrees ``x = i / ppd`` for ``i`` in ``[-r, r]``:

    g(x; a, b) = a sqrt(pi / b) exp(-pi^2 x^2 / b)
    Y:  g(x; 1, 0.0047)          Cx: g(x; 1, 0.0053)          (each normalised to sum 1)
    Cz: g(x; 34.1, 0.04) + g(x; 13.5, 0.025) in 2-D, separated as two rank-1 filters with taps
        sqrt(a sqrt(pi / b)) exp(-pi^2 x^2 / b), both scaled by 1 / sqrt(S1^2 + S2^2)
    r = ceil(3 sqrt(0.04 / (2 pi^2)) ppd)                 (10 at 67.02 ppd: 21 taps)

Feature (edge and point) filters, in pixels, sigma = 0.5 * 0.082 * ppd, radius ceil(3 sigma):

    g = exp(-i^2 / (2 sigma^2)),  dg = -i g,  ddg = (i^2 / sigma^2 - 1) g
    g sums to 1; the positive and the negative taps of dg and of ddg each sum to 1 in magnitude.

The feature radius (ceil(0.123 ppd)) never exceeds the spatial one (ceil(0.135 ppd)); the
feature taps are returned zero-padded to the spatial width so one pass filters both.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

Taps = npt.NDArray[np.float32]

_f = np.float32
_PI = _f(3.14159265358979)
_PI_SQ = _f(_PI * _PI)
_Y = (_f(1.0), _f(0.0047))
_CX = (_f(1.0), _f(0.0053))
_CZ1 = (_f(34.1), _f(0.04))
_CZ2 = (_f(13.5), _f(0.025))
_LARGEST_B = _f(0.04)  # the widest of the six Gaussians (b1.z)
_GW = _f(0.082)  # feature filter width, degrees


def spatial_radius(ppd: float) -> int:
    """The spatial filters' radius in pixels: ``ceil(3 sqrt(0.04 / (2 pi^2)) ppd)``."""
    scale = np.sqrt(_LARGEST_B / (_f(2.0) * _PI_SQ))
    return int(np.ceil(_f(3.0) * scale * _f(ppd)))


def feature_radius(ppd: float) -> int:
    """The edge and point filters' radius in pixels: ``ceil(3 * 0.5 * 0.082 * ppd)``."""
    return int(np.ceil(_f(3.0) * (_f(0.5) * _GW * _f(ppd))))


def _gaussian(x2: np.float32, a: np.float32, b: np.float32) -> np.float32:
    return _f(a * np.sqrt(_PI / b) * np.exp(-_PI_SQ * x2 / b))


def _gaussian_sqrt(x2: np.float32, a: np.float32, b: np.float32) -> np.float32:
    return _f(np.sqrt(a * np.sqrt(_PI / b)) * np.exp(-_PI_SQ * x2 / b))


@functools.lru_cache(maxsize=32)  # bounded: ppd comes from requests
def spatial_taps(ppd: float) -> Taps:
    """``(4, 2r + 1)`` float32: the Y, Cx, Cz-first and Cz-second taps (read-only)."""
    radius = spatial_radius(ppd)
    step = _f(1.0) / _f(ppd)
    rows = []
    for i in range(2 * radius + 1):
        x = _f(i - radius) * step
        x2 = x * x
        rows.append(
            (
                _gaussian(x2, *_Y),
                _gaussian(x2, *_CX),
                _gaussian_sqrt(x2, *_CZ1),
                _gaussian_sqrt(x2, *_CZ2),
            )
        )
    sums = [_f(0.0)] * 4
    for row in rows:  # sequential float32 sums, as the reference accumulates
        sums = [_f(s + v) for s, v in zip(sums, row, strict=True)]
    scale_y, scale_cx = _f(1.0) / sums[0], _f(1.0) / sums[1]
    scale_cz = _f(1.0) / np.sqrt(sums[2] * sums[2] + sums[3] * sums[3])
    scaled = [(y * scale_y, cx * scale_cx, c1 * scale_cz, c2 * scale_cz) for y, cx, c1, c2 in rows]
    return _frozen(np.array(scaled, dtype=np.float32).T)


@functools.lru_cache(maxsize=32)
def feature_taps(ppd: float) -> Taps:
    """``(3, 2r + 1)`` float32: the Gaussian, its first and its second derivative, normalised
    as above and zero-padded to the spatial radius ``r`` (read-only)."""
    sigma = _f(0.5) * _GW * _f(ppd)
    radius = feature_radius(ppd)
    rows = []
    sums = {"g": _f(0.0), "d+": _f(0.0), "d-": _f(0.0), "dd+": _f(0.0), "dd-": _f(0.0)}
    for i in range(-radius, radius + 1):
        x = _f(i)
        g = _f(np.exp(-(x * x) / (_f(2.0) * sigma * sigma)))
        dg = _f(-x * g)
        ddg = _f((x * x / (sigma * sigma) - _f(1.0)) * g)
        sums["g"] += g
        sums["d+" if dg > 0 else "d-"] += dg if dg > 0 else -dg
        sums["dd+" if ddg > 0 else "dd-"] += ddg if ddg > 0 else -ddg
        rows.append((g, dg, ddg))
    # Below about 1.7 ppd the Gaussian is 0 one pixel out, so both sums of the first derivative
    # are 0 and its taps 0 / 0: NaN, as in the reference, whose Max() then takes the points
    # (``app.scores.flip._feature_difference`` does the same).
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = [
            (
                g / sums["g"],
                dg / (sums["d+"] if dg > 0 else sums["d-"]),
                ddg / (sums["dd+"] if ddg > 0 else sums["dd-"]),
            )
            for g, dg, ddg in rows
        ]
    pad = spatial_radius(ppd) - radius
    taps = np.pad(np.array(normalised, dtype=np.float32).T, ((0, 0), (pad, pad)))
    return _frozen(taps)


def _frozen(array: Taps) -> Taps:
    array.flags.writeable = False
    return array
