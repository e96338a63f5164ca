"""Regions of interest, in one place: what a mask is, from the uploaded image to what each score
makes of it. Nothing else parses, sizes, checks or reduces a mask.

* **parse** (``selection``): a mask is an image whose alpha channel, where it has one, else its
  luminance, is nonzero where to compare; one rule per pixel mode:

  - modes with alpha (``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``), and images with a transparent
    colour or palette entry: the alpha (a transparent pixel is not compared);
  - otherwise the luminance: the value of ``1``, ``L``, ``I``, ``I;16*`` and ``F`` (NaN counts
    as zero); any colour channel of ``RGB``, ``RGBX``, ``P`` and ``CMYK`` (after Pillow's
    conversion to RGB: luminance is zero exactly when all three are); the Y band of
    ``YCbCr``, the L* band of ``LAB``, the V band of ``HSV``;
  - any other mode is refused (415) with its name.
* **size** (``at_size``): resized to the compared size with nearest-neighbour sampling, so it
  stays binary; a mask is then a bool tensor ``(1, H, W)``, or ``(N, 1, H, W)`` for a batch.
* **check** (``check_selects``, ``check_for``): it must select a pixel, and a window centre for
  ``ssim``.
* **reduce**, for the scores, which all take it as one argument, ``mask``: the candidate equals
  the reference outside it before anything is scored (``composite``: nothing outside can move a
  score, not even through VGG's receptive fields or the SSIM window); mse averages the pixels
  inside; ssim the window positions whose centre is inside (``window_centres``); vgg and style
  weight each tap cell by the fraction of it inside (``tap_weights``); ms_ssim carries it down
  its scales with the images' own pooling and averages, at each scale, the window positions
  whose centre is inside (``scale_centres``); ``coverage`` is the fraction of pixels inside,
  reported with every result.

The contract is in the README's "Regions of interest" section.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image

from app.errors import InvalidRequest, UnsupportedImageFormat

SSIM_WINDOW = 11  # app.scores.ssim.WINDOW_SIZE (which imports this module)
MS_SSIM_SCALES = 5  # app.scores.ms_ssim.SCALES (which imports this module)
_WIDE_GREY = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_BAND = {"LA": "A", "La": "a", "PA": "A", "RGBA": "A", "RGBa": "a"}
_LUMA_BAND = {"YCbCr": "Y", "LAB": "L", "HSV": "V"}
_VALUE_MODES = frozenset({"1", "L", *_WIDE_GREY})

Size = tuple[int, int]  # (width, height)


def selection(image: Image.Image) -> npt.NDArray[np.bool_]:
    """Where a decoded mask image selects, ``(H, W)`` bool (the module docstring's rule for its
    pixel mode; 415 for a mode without one)."""
    selected = _selected(image)
    if selected is None:
        raise UnsupportedImageFormat(
            f"the mask uses the pixel mode {image.mode!r}, which simscore cannot read as a "
            "mask; save it as 8-bit grey, RGB or RGBA"
        )
    return np.asarray(selected, dtype=np.bool_)


def _selected(image: Image.Image) -> Any:
    """The selection as a numpy array of any dtype (None: no rule for the mode)."""
    mode = image.mode
    if mode in _ALPHA_BAND:
        return np.asarray(image.getchannel(_ALPHA_BAND[mode])) > 0
    transparent = image.info.get("transparency")
    if transparent is not None and mode in _WIDE_GREY and isinstance(transparent, int):
        return np.asarray(image) != transparent
    if transparent is not None and mode in ("1", "L", "P", "RGB"):
        return np.asarray(image.convert("RGBA").getchannel("A")) > 0
    if mode in _LUMA_BAND:
        return np.asarray(image.getchannel(_LUMA_BAND[mode])) > 0
    if mode in _VALUE_MODES:
        return np.asarray(image) != 0
    if mode == "F":
        values = np.asarray(image)
        return (values != 0) & ~np.isnan(values)
    if mode in ("RGB", "RGBX"):
        return np.asarray(image)[..., :3].any(axis=2)
    if mode in ("P", "CMYK"):
        return np.asarray(image.convert("RGB")).any(axis=2)
    return None


def at_size(selected: npt.NDArray[np.bool_], size: Size) -> torch.Tensor:
    """A selection resized to ``size`` (width, height), nearest neighbour: ``(1, H, W)`` bool."""
    image = Image.fromarray(selected.astype(np.uint8) * 255)
    resized = image.resize(size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(resized) > 0).unsqueeze(0)


def check_selects(mask: torch.Tensor) -> None:
    """Refuse (422) a mask that selects no pixel at the compared size."""
    height, width = mask.shape[-2:]
    if not bool(mask.any()):
        raise InvalidRequest(
            f"the mask selects no pixel at the compared size {width}x{height}: nonzero pixels "
            "(alpha where the mask has it, else luminance) mark where to compare"
        )


def check_for(mask: torch.Tensor, scores: Collection[str]) -> None:
    """Refuse (422) a mask that leaves one of ``scores`` nothing to average."""
    if "ssim" in scores and not bool(window_centres(mask).any()):
        raise InvalidRequest(
            "the mask selects no SSIM window centre: ssim averages the 11x11 windows whose "
            "centre lies inside the mask, so it needs a pixel at least 5 px from every border "
            "of the compared image (or ask for scores without ssim)"
        )
    if "ms_ssim" in scores and not all(bool(c.any()) for c in _ms_ssim_centres(mask)):
        raise InvalidRequest(
            "the mask selects no MS-SSIM window centre at some scale: ms_ssim carries the mask "
            "down its five scales (halving it as it halves the images) and averages the 11x11 "
            "windows centred in it at each, so it needs a pixel about 80 px from every border "
            "of the compared image (or ask for scores without ms_ssim)"
        )


def _ms_ssim_centres(mask: torch.Tensor) -> list[torch.Tensor]:
    """``scale_centres`` as MS-SSIM carries ``mask`` ``(1, H, W)``: a pooled cell is above 0
    exactly when it holds a pixel of the mask, so a max pool with MS-SSIM's padding stands in
    for its average pool."""

    def halve(pooled: torch.Tensor) -> torch.Tensor:
        padding = [side % 2 for side in pooled.shape[-2:]]
        return F.max_pool2d(pooled, kernel_size=2, stride=2, padding=padding)

    return scale_centres(mask.unsqueeze(0), halve, scales=MS_SSIM_SCALES)


def composite(reference: torch.Tensor, candidate: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The candidate inside ``mask``, the reference outside: ``(C, H, W)`` or ``(N, C, H, W)``
    images, ``mask`` broadcastable to them (nonzero: inside)."""
    return torch.where(mask.bool(), candidate, reference)


def coverage(mask: torch.Tensor) -> float:
    """The fraction of pixels inside ``mask``."""
    return float(mask.bool().float().mean())


def window_centres(mask: torch.Tensor, window_size: int = SSIM_WINDOW) -> torch.Tensor:
    """``(N, 1, H, W) -> (N, 1, H-w+1, W-w+1)``: where the centre of each valid SSIM window lies
    inside the mask (the positions ``ssim_map`` computes)."""
    margin = window_size // 2
    height, width = mask.shape[-2:]
    return mask.bool()[..., margin : height - margin, margin : width - margin]


def tap_weights(mask: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """For each tap shape ``(..., h, w)``, the fraction of each of its cells inside the mask:
    ``(N, 1, H, W) -> (N, 1, h, w)`` by area interpolation, in float32."""
    inside = mask.bool().float()
    return [F.interpolate(inside, size=tuple(shape[-2:]), mode="area") for shape in shapes]


def scale_centres(
    mask: torch.Tensor,
    halve: Callable[[torch.Tensor], torch.Tensor],
    *,
    scales: int,
    window_size: int = SSIM_WINDOW,
) -> list[torch.Tensor]:
    """A mask carried down the scales of a multi-scale score with ``halve``, the images' own
    downsampling (so mask and images stay aligned): at each scale, where the valid window
    positions' centres have a pooled mask above 0. ``(N, 1, H, W)`` -> ``scales`` bool tensors
    ``(N, 1, h_j - w + 1, w_j - w + 1)``."""
    margin = window_size // 2
    pooled = mask.bool().float()
    centres = []
    for scale in range(scales):
        if scale:
            pooled = halve(pooled)
        height, width = pooled.shape[-2:]
        centres.append(pooled[..., margin : height - margin, margin : width - margin] > 0)
    return centres
