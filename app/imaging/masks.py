"""A region-of-interest mask upload -> a boolean ``(1, H, W)`` tensor at the compared size.

The mask is an image (PNG, any mode; the other supported formats too): its alpha channel where
it has one, else its luminance; nonzero means "compare here" (``app.imaging.modes.selection``
has the rule for each pixel mode; a mode without one is refused with 415). EXIF orientation is
applied, then it is resized to the compared size with nearest-neighbour sampling (so it stays
binary). The same screening and pixel limits as for images apply.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from app.errors import InvalidRequest
from app.imaging.decode import PixelBudget, Size, load_pixels, open_image, orientation_of, upright
from app.imaging.formats import screen
from app.imaging.modes import selection
from app.metrics import window_centres

WHAT = "mask"


def prepare_mask(
    data: bytes,
    size: Size,
    *,
    max_pixels: int,
    budget: PixelBudget | None = None,
    needs_ssim_centre: bool = False,
) -> torch.Tensor:
    """The mask at ``size`` (width, height) as ``(1, H, W)`` bool. Refuses (422) a mask that
    selects no pixel, and with ``needs_ssim_centre`` one that selects no SSIM window centre."""
    if not data:
        raise InvalidRequest("the mask is empty (0 bytes); upload the mask image itself")
    screen(data, WHAT)
    with open_image(data, max_pixels, WHAT) as image:
        if budget is not None:
            budget.take(image.width * image.height, WHAT)
        orientation = orientation_of(image)
        load_pixels(image, max_pixels, WHAT)
        channel = Image.fromarray(selection(image, WHAT).astype(np.uint8) * 255)
    shown = upright(channel, orientation)
    resized = shown.resize(size, Image.Resampling.NEAREST)
    mask = torch.from_numpy(np.asarray(resized) > 0).unsqueeze(0)
    _check(mask, needs_ssim_centre)
    return mask


def _check(mask: torch.Tensor, needs_ssim_centre: bool) -> None:
    height, width = mask.shape[-2:]
    if not bool(mask.any()):
        raise InvalidRequest(
            f"the mask selects no pixel at the compared size {width}x{height}: nonzero pixels "
            "(alpha where the mask has it, else luminance) mark where to compare"
        )
    if needs_ssim_centre and not bool(window_centres(mask).any()):
        raise InvalidRequest(
            "the mask selects no SSIM window centre: ssim averages the 11x11 windows whose "
            "centre lies inside the mask, so it needs a pixel at least 5 px from every border "
            "of the compared image (or ask for metrics without ssim)"
        )
