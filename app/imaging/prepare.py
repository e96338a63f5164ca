"""Decoded images at the size they are scored at: the size policy that pairs a candidate with its
reference.

* A side under ``MIN_SIDE`` px is refused with ``ImageTooSmall`` (from the header, before
  decoding). A longest side over ``max_side`` is downscaled to it, aspect kept (short side
  rounded, at least 1 px, and again at least ``MIN_SIDE``).
* A candidate whose size differs from its reference's is, under the ``resize`` policy, resized to
  the reference's (already fitted) size; under ``strict`` it is refused with ``SizeMismatch``
  (also from the header).
* Resizing is antialiased bilinear on float32 (after ``app.imaging.decode`` has reduced large
  uploads by an integer factor in 8 bits), clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.budgets import Budget
from app.errors import ImageTooSmall, InvalidRequest, SizeMismatch
from app.imaging.decode import Size, decode_image
from app.vocabulary import MIN_SIDE, SIZE_POLICIES, SizePolicy

_TOO_SMALL_WHY = (
    "VGG19 to relu5_1 pools four times and SSIM needs an 11 px window; "
    "the smallest side must be at least 16 px"
)


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """A decoded image ready for scoring."""

    tensor: torch.Tensor  # (3, H, W) float32 in [0, 1], contiguous, CPU
    original_size: Size  # (width, height) after EXIF orientation, before any resize
    resized: bool  # max-side downscale or size-policy resize happened

    @property
    def width(self) -> int:
        return int(self.tensor.shape[2])

    @property
    def height(self) -> int:
        return int(self.tensor.shape[1])

    @property
    def size(self) -> Size:
        return self.width, self.height


def prepare_reference(
    data: bytes, *, max_pixels: int, max_side: int, budget: Budget | None = None
) -> PreparedImage:
    """Decode a reference image and fit its longest side to ``max_side``."""
    what = "reference image"

    def sizing(size: Size) -> Size:
        check_min_side(size, what)
        target = fit_size(size, max_side)
        if target != size:
            after = f" after downscaling {wxh(size)} to SIMSCORE_MAX_SIDE={max_side}"
            check_min_side(target, what, after)
        return target

    decoded = decode_image(data, what=what, max_pixels=max_pixels, budget=budget, sizing=sizing)
    target = fit_size(decoded.size, max_side)
    return PreparedImage(_to_size(decoded.tensor, target), decoded.size, target != decoded.size)


def prepare_candidate(
    data: bytes,
    reference: PreparedImage,
    *,
    max_pixels: int,
    size_policy: SizePolicy,
    budget: Budget | None = None,
) -> PreparedImage:
    """Decode a candidate and bring it to ``reference``'s tensor size under ``size_policy``."""
    if size_policy not in SIZE_POLICIES:
        raise InvalidRequest(f"size_policy must be 'resize' or 'strict', not {size_policy!r}")
    what = "candidate image"

    def sizing(size: Size) -> Size:
        check_min_side(size, what)
        if size != reference.original_size and size_policy == "strict":
            raise SizeMismatch(
                f"the candidate image is {wxh(size)} px but the reference image is "
                f"{wxh(reference.original_size)} px (after EXIF orientation); send images of "
                "the same size or use size_policy=resize"
            )
        return reference.size

    decoded = decode_image(data, what=what, max_pixels=max_pixels, budget=budget, sizing=sizing)
    # Same original size -> the same max-side fit as the reference; otherwise resized to it.
    resized = decoded.size != reference.size
    return PreparedImage(_to_size(decoded.tensor, reference.size), decoded.size, resized)


def prepare_pair(
    reference: bytes,
    candidate: bytes,
    *,
    max_pixels: int,
    max_side: int,
    size_policy: SizePolicy,
) -> tuple[PreparedImage, PreparedImage]:
    """Prepare a reference and a candidate whose tensors have the same size."""
    prepared = prepare_reference(reference, max_pixels=max_pixels, max_side=max_side)
    return prepared, prepare_candidate(
        candidate, prepared, max_pixels=max_pixels, size_policy=size_policy
    )


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) -> (C, h, w) for ``size=(h, w)``: antialiased bilinear, clamped to [0, 1]."""
    if tuple(tensor.shape[1:]) == size:
        return tensor.contiguous()
    out = F.interpolate(
        tensor.unsqueeze(0), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return out.squeeze(0).clamp_(0.0, 1.0).contiguous()


def fit_size(size: Size, max_side: int) -> Size:
    """(width, height) with the longest side at most ``max_side``, aspect kept."""
    width, height = size
    longest = max(width, height)
    if longest <= max_side:
        return size
    scale = max_side / longest
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def check_min_side(size: Size, what: str, after: str = "") -> None:
    if min(size) < MIN_SIDE:
        raise ImageTooSmall(f"the {what} is {wxh(size)} px{after}: {_TOO_SMALL_WHY}")


def wxh(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def _to_size(tensor: torch.Tensor, size: Size) -> torch.Tensor:
    return resize(tensor, (size[1], size[0]))
