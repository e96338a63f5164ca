"""Colour transforms of FLIP on stacked planes: ``(3, ...)`` tensors, float32.

The constants are those of ``FLIP::color3`` in NVIDIA's reference (``FLIP.h``,
``flip-evaluator`` 1.7): sRGB <-> linear RGB (IEC 61966-2-1), linear RGB <-> CIE XYZ under
D65, XYZ <-> YCxCz (the opponent space of Johnson and Fairchild), XYZ -> CIELAB, the Hunt
adjustment and the HyAB distance (Abasi, Amani Tehran and Fairchild, 2020):

    YCxCz:  Y = 116 y - 16,  Cx = 500 (x - y),  Cz = 200 (y - z)     with (x, y, z) = XYZ / D65
    CIELAB: L = 116 f(y) - 16, a = 500 (f(x) - f(y)), b = 200 (f(y) - f(z)),
            f(t) = t^(1/3) above (6/29)^3, else t / (3 (6/29)^2) + 4/29
    Hunt:   (L, a, b) -> (L, 0.01 L a, 0.01 L b)
    HyAB:   |L1 - L2| + sqrt((a1 - a2)^2 + (b1 - b2)^2)

The linear steps between two non-linear ones are composed into one affine map (in float64, then
rounded to float32) and applied as one ``3 x 3`` product: the results differ from the
reference's step-by-step float32 arithmetic by a few units in the last place.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

_f = np.float32


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator.0f / denominator.0f`` as C++ evaluates it in float32."""
    return float(_f(numerator) / _f(denominator))


# LinearRGBToXYZ (sRGB primaries, D65) and XYZToLinearRGB, as FLIP.h writes them.
RGB_TO_XYZ = np.array(
    [
        [_ratio(10135552, 24577794), _ratio(8788810, 24577794), _ratio(4435075, 24577794)],
        [_ratio(2613072, 12288897), _ratio(8788810, 12288897), _ratio(887015, 12288897)],
        [_ratio(1425312, 73733382), _ratio(8788810, 73733382), _ratio(70074185, 73733382)],
    ]
)
XYZ_TO_RGB = np.array(
    [
        [3.241003275, -1.537398934, -0.498615861],
        [-0.969224334, 1.875930071, 0.041554224],
        [0.055639423, -0.204011202, 1.057148933],
    ]
)
D65 = np.array([0.950428545, 1.0, 1.088900371])
INV_D65 = np.array([1.052156925, 1.0, 0.918357670])
_DELTA = _f(6.0) / _f(29.0)
_DELTA_CUBE = float(_DELTA * (_DELTA * _DELTA))
_LINEAR_SLOPE = float(_f(1.0) / (_f(3.0) * (_DELTA * _DELTA)))
_LINEAR_OFFSET = float(_f(4.0) / _f(29.0))
_ONE_THIRD = float(_f(1.0) / _f(3.0))


def _affine(matrix: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """A ``(k, 3)`` matrix and a ``(k,)`` offset as one ``(k, 4)`` array ``[M | o]``."""
    return np.column_stack([matrix, np.zeros(len(matrix)) if offset is None else offset])


def _then(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``second(first(p))`` for ``[M | o]`` arrays."""
    return _affine(second[:, :3] @ first[:, :3], second[:, :3] @ first[:, 3] + second[:, 3])


_TO_SCALED_XYZ = _affine(np.diag(INV_D65) @ RGB_TO_XYZ)  # linear RGB -> XYZ / D65
_OPPONENT = _affine(  # (x, y, z) -> (116 y - 16, 500 (x - y), 200 (y - z)): YCxCz and CIELAB
    np.array([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]]),
    np.array([-16.0, 0.0, 0.0]),
)
_FROM_OPPONENT = _affine(np.linalg.inv(_OPPONENT[:, :3]), np.full(3, 16.0 / 116.0))
TRANSFORMS: dict[str, np.ndarray] = {
    # linear RGB -> (Y, Cx, Cz) and FLIP's feature input (Y + 16) / 116
    "rgb_to_ycxcz": np.vstack([_then(_OPPONENT, _TO_SCALED_XYZ), _TO_SCALED_XYZ[1:2]]),
    # filtered YCxCz -> linear RGB (clamped afterwards)
    "ycxcz_to_rgb": _then(_affine(XYZ_TO_RGB @ np.diag(D65)), _FROM_OPPONENT),
    "rgb_to_scaled_xyz": _TO_SCALED_XYZ,  # CIELAB's input
    "lab": _OPPONENT,  # (f(x), f(y), f(z)) -> (L, a, b)
}


def srgb_to_linear(value: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> linear: ``v / 12.92`` up to 0.04045, else ``((v + 0.055) / 1.055)^2.4``."""
    curve = power(value.add(0.055).div_(1.055), 2.4)
    return select(value <= 0.04045, value / 12.92, curve)


def power(base: torch.Tensor, exponent: float) -> torch.Tensor:
    """``base ^ exponent`` for ``base >= 0`` and ``exponent > 0``, in place, as
    ``exp(exponent log base)`` (0 -> exp(-inf) = 0): vectorised on a CPU, unlike ``pow`` with
    a fractional exponent, and within a few units in the last place of it."""
    return base.log_().mul_(exponent).exp_()


def select(condition: torch.Tensor, if_true: torch.Tensor, if_false: torch.Tensor) -> torch.Tensor:
    """``torch.where`` for finite values, several times faster on a CPU: a ``lerp`` with weights
    0 and 1 returns either end exactly (``end - (end - start) * 0`` and ``start + 0``)."""
    return torch.lerp(if_false, if_true, condition.to(if_true.dtype))


def apply(name: str, planes: torch.Tensor) -> torch.Tensor:
    """The affine map ``TRANSFORMS[name]`` at each position: ``(3, ...) -> (k, ...)``."""
    matrix, offset = _on_device(name, planes.device)
    out = torch.matmul(matrix, planes.reshape(3, -1)).view(-1, *planes.shape[1:])
    return out.add_(offset.view(-1, *([1] * (planes.dim() - 1))))


@functools.cache
def _on_device(name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``TRANSFORMS[name]`` as float32 ``(M, o)`` on ``device``, made once."""
    with torch.inference_mode(False):
        values = torch.tensor(TRANSFORMS[name], dtype=torch.float32, device=device)
        return values[:, :3].contiguous(), values[:, 3].contiguous()


def lab_f(scaled: torch.Tensor) -> torch.Tensor:
    """CIELAB's ``f`` on XYZ / D65 (non-negative here: it comes from clamped RGB)."""
    cube_root = power(scaled.clone(), _ONE_THIRD)
    return select(scaled > _DELTA_CUBE, cube_root, scaled * _LINEAR_SLOPE + _LINEAR_OFFSET)


def hunt(lab: torch.Tensor) -> torch.Tensor:
    """Chroma scaled by lightness, in place: ``(L, a, b) -> (L, 0.01 L a, 0.01 L b)``."""
    lab[1:] *= lab[:1] * 0.01
    return lab


def hyab(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``|L1 - L2| + sqrt((a1 - a2)^2 + (b1 - b2)^2)`` of two ``(3, ...)`` stacks."""
    diff = p - q
    chroma = diff[1].mul(diff[1]).addcmul_(diff[2], diff[2]).sqrt_()
    return diff[0].abs_().add_(chroma)
