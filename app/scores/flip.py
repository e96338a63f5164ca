"""LDR-FLIP (Andersson, Nilsson, Akenine-Moller, Oskarsson, Astrom and Fairchild, "FLIP: A
Difference Evaluator for Alternating Images", HPG 2020), as NVIDIA's reference implementation
``flip-evaluator`` 1.7 computes it (``FLIP.h``, LDR path, sRGB inputs).

For a reference and a candidate, sRGB in [0, 1] (clamped), at ``ppd`` pixels per degree
(``app.scores.flip_viewing``; default 67.02):

1. Colour. sRGB -> linear -> XYZ -> YCxCz; each channel filtered by its contrast sensitivity
   filter (``app.scores.flip_filters``; Cz by a sum of two Gaussians); back to linear RGB,
   clamped to [0, 1]; -> CIELAB, Hunt adjustment; ``e = HyAB(ref, cand) ^ 0.7``;
   redistributed with ``c_max = HyAB(Hunt(green), Hunt(blue)) ^ 0.7``, ``p_c = 0.4``,
   ``p_t = 0.95``: ``e_c = e p_t / (p_c c_max)`` below ``p_c c_max``, else
   ``p_t + (e - p_c c_max) / (c_max - p_c c_max) (1 - p_t)``.
2. Features. On the normalised achromatic channel ``(Y + 16) / 116`` of the unfiltered images:
   edges ``|(G_x' * I, G_y' * I)|`` and points ``|(G_x'' * I, G_y'' * I)|`` with the
   derivative-of-Gaussian filters; ``e_f = (max(|edge_r - edge_c|, |point_r - point_c|)
   / sqrt 2) ^ 0.5``.
3. ``FLIP = e_c ^ (1 - e_f)`` per pixel, in [0, 1]; the score is its mean.

Filters are separable (horizontal pass, then vertical), with the border pixels repeated
(the reference clamps the sample index), and run as banded products
(``app.scores.separable``). All of it in float32, as the reference computes, in every
precision mode of the service: autocast and TF32 are switched off here (``fp32_math``).

Pairs that are equal are recognised first: their map is exactly 0. References and candidates
are filtered apart, so a reference shared by several candidates is filtered once
(``flip_against``: the service's batches). On the CPU each image is filtered on its own (one
image per product), so a pair's map never depends on its batch; on a GPU the batch goes
through at once. Equals ``flip_evaluator.evaluate(ref, cand, "LDR")`` within
1e-4 in the mean (measured: under 4e-6) and 3e-4 per pixel (measured: 1.4e-5 from 30 ppd up;
where two colours nearly agree, HyAB^0.7 magnifies the float32 rounding of either side), in
tests/scores/test_flip.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from app.scores import colour
from app.scores.flip_filters import feature_taps, spatial_radius, spatial_taps
from app.scores.flip_viewing import DEFAULT_PPD
from app.scores.separable import (
    band_matrix,
    filter_columns,
    filter_rows,
    fp32_math,
    one_blas_thread,
)

_f = np.float32
_GQC, _GPC, _GPT = _f(0.7), _f(0.4), _f(0.95)  # the feature exponent q_f = 0.5 is a sqrt


@functools.cache
def _colour_range() -> tuple[float, float, float]:
    """``(c_max, p_c c_max, c_max - p_c c_max)`` in float32 (``computeMaxDistance``: the HyAB
    distance of green and blue after the Hunt adjustment, ^0.7)."""
    # green and blue as columns; a host constant, computed once
    primaries = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], device="cpu")
    lab = colour.hunt(
        colour.apply("lab", colour.lab_f(colour.apply("rgb_to_scaled_xyz", primaries)))
    )
    distance = colour.hyab(lab[:, :1], lab[:, 1:])
    c_max = _f(float(distance.pow(float(_GQC))))
    knee = _GPC * c_max
    return float(c_max), float(knee), float(c_max - knee)


@functools.lru_cache(maxsize=32)  # bounded: ppd comes from requests
def _bands(ppd: float, device: torch.device) -> dict[str, torch.Tensor]:
    """The banded matrices of every filter at ``ppd`` on ``device`` (made once)."""
    spatial, feature = spatial_taps(ppd), feature_taps(ppd)
    named = {"y": spatial[0], "cx": spatial[1], "cz1": spatial[2], "cz2": spatial[3]}
    named |= {"g": feature[0], "dg": feature[1], "ddg": feature[2]}
    with torch.inference_mode(False):
        return {
            name: band_matrix(torch.from_numpy(np.array(taps)).to(device))
            for name, taps in named.items()
        }


# The horizontal pass filters plane _ACROSS[i][0] with _ACROSS[i][1]; the vertical pass then
# filters horizontal output _DOWN[j][0] with _DOWN[j][1] (the reference's order: x, then y).
_ACROSS = (("luma", "y"), ("cx", "cx"), ("cz", "cz1"), ("cz", "cz2"), ("norm", "dg"),
           ("norm", "ddg"), ("norm", "g"))  # fmt: skip
# -> filtered Y, Cx, Cz (two terms), then the features dx, ddx, dy, ddy
_DOWN = ((0, "y"), (1, "cx"), (2, "cz1"), (3, "cz2"), (4, "g"), (5, "g"), (6, "dg"), (6, "ddg"))
_PLANES = ("luma", "cx", "cz", "norm")


def _opponent(images: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB -> ``(4, H, B, W + 2r)``: Y, Cx, Cz and ``(Y + 16) / 116``, the
    border columns repeated ``r`` times (the reference clamps the sample index)."""
    linear = colour.srgb_to_linear(images.clamp(0.0, 1.0).permute(1, 2, 0, 3))
    planes = colour.apply("rgb_to_ycxcz", linear)
    width = planes.shape[-1]
    out = planes.new_empty(*planes.shape[:-1], width + 2 * radius)
    out[..., radius : radius + width] = planes
    out[..., :radius] = planes[..., :1]
    out[..., radius + width :] = planes[..., -1:]
    return out


def _filtered(images: torch.Tensor, ppd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, H, W)`` sRGB -> ``(3, H, B, W)`` filtered YCxCz and ``(4, H, B, W)`` feature
    responses ``(dx, ddx, dy, ddy)``: a horizontal pass, then a vertical one."""
    radius = spatial_radius(ppd)
    bands = _bands(ppd, images.device)
    planes = _opponent(images, radius)
    _, height, count, padded_width = planes.shape
    width = padded_width - 2 * radius
    across = planes.new_empty(len(_ACROSS), height + 2 * radius, count, width)
    for index, (name, band) in enumerate(_ACROSS):
        source = planes[_PLANES.index(name)].view(height * count, padded_width)
        target = across[index, radius : radius + height].view(height * count, width)
        filter_columns(source, bands[band], out=target)
    across[:, :radius] = across[:, radius : radius + 1]
    across[:, radius + height :] = across[:, radius + height - 1 : radius + height]
    down = planes.new_empty(len(_DOWN), height, count, width)
    for index, (horizontal, band) in enumerate(_DOWN):
        source = across[horizontal].view(height + 2 * radius, count * width)
        filter_rows(source, bands[band], out=down[index].view(height, count * width))
    filtered = down[:3].clone()
    filtered[2] += down[3]  # Cz: the sum of its two separable filters
    return filtered, down[4:]


def _colour_difference(filtered: torch.Tensor, pairs: int) -> torch.Tensor:
    """The redistributed colour error ``e_c``: ``(3, H, 2n, W)`` filtered YCxCz of the
    references then the candidates -> ``(H, n, W)``."""
    rgb = colour.apply("ycxcz_to_rgb", filtered).clamp_(0.0, 1.0)
    lab = colour.hunt(colour.apply("lab", colour.lab_f(colour.apply("rgb_to_scaled_xyz", rgb))))
    error = colour.power(colour.hyab(lab[:, :, :pairs], lab[:, :, pairs:]), float(_GQC))
    _, knee, span = _colour_range()
    low = error * float(_GPT / _f(knee))
    high = (error - knee).div_(span).mul_(float(_f(1.0) - _GPT)).add_(float(_GPT))
    return colour.select(error < knee, low, high)


def _feature_difference(features: torch.Tensor, pairs: int) -> torch.Tensor:
    """``e_f`` from ``(4, H, 2n, W)`` responses ``(dx, ddx, dy, ddy)`` -> ``(H, n, W)``."""
    dx, ddx, dy, ddy = features
    edge = dx.mul(dx).addcmul_(dy, dy).sqrt_()
    point = ddx.mul(ddx).addcmul_(ddy, ddy).sqrt_()
    edge_change = (edge[:, :pairs] - edge[:, pairs:]).abs_()
    point_change = (point[:, :pairs] - point[:, pairs:]).abs_()
    normalisation = float(_f(1.0) / np.sqrt(_f(2.0)))
    # the reference's Max(a, b) = a > b ? a : b, NaN included: below about 1.7 ppd the edge
    # filter's taps are 0 / 0 (the Gaussian vanishes one pixel out) and only points count
    larger = torch.where(edge_change > point_change, edge_change, point_change)
    return larger.mul_(normalisation).sqrt_()  # ^ 0.5


Filtered = tuple[torch.Tensor, torch.Tensor]  # _filtered's output: YCxCz and feature planes


def _difference(reference: Filtered, candidate: Filtered) -> torch.Tensor:
    """The FLIP map of ``n`` pairs from their filtered planes (``_filtered``; a reference of
    one image serves every candidate): -> ``(n, 1, H, W)``."""
    pairs = candidate[0].shape[2]

    def both(index: int) -> torch.Tensor:
        ref = reference[index]
        ref = ref.expand(-1, -1, pairs, -1) if ref.shape[2] != pairs else ref
        return torch.cat([ref, candidate[index]], dim=2)

    colour_error = _colour_difference(both(0), pairs)
    exponent = _feature_difference(both(1), pairs).neg_().add_(1.0)
    return colour_error.pow_(exponent).permute(1, 0, 2).unsqueeze(1)


def _flip_group(reference: torch.Tensor, candidate: torch.Tensor, ppd: float) -> torch.Tensor:
    """The FLIP map of ``n`` unequal pairs: ``(n, 3, H, W)`` x2 -> ``(n, 1, H, W)``; the
    references and the candidates filtered each on their own (so a reference shared by several
    pairs can be filtered once: ``flip_against``)."""
    return _difference(_filtered(reference.float(), ppd), _filtered(candidate.float(), ppd))


def flip_against(
    reference: torch.Tensor, candidates: torch.Tensor, *, ppd: float = DEFAULT_PPD
) -> torch.Tensor:
    """Per-pixel LDR-FLIP of several candidates against one reference, the reference's share
    (its filtering) done once: ``(1, 3, H, W)`` and ``(n, 3, H, W)`` -> ``(n, 1, H, W)``. Each
    map equals ``flip_map``'s for the pair (on the CPU bit for bit: each image is filtered on
    its own either way); a candidate equal to the reference gets exactly 0."""
    if (
        reference.dim() != 4
        or reference.shape[0] != 1
        or reference.shape[1:] != candidates.shape[1:]
    ):
        raise ValueError(
            "need a (1, 3, H, W) reference and (n, 3, H, W) candidates of its size, "
            f"got {tuple(reference.shape)}, {tuple(candidates.shape)}"
        )
    count, _, height, width = candidates.shape
    out = candidates.new_zeros(count, 1, height, width, dtype=torch.float32)
    with fp32_math(reference.device), one_blas_thread(reference.device):
        if reference.device.type != "cpu":  # every candidate at once, no wait for the host
            equal = (candidates == reference).flatten(1).all(1).view(count, 1, 1, 1)
            maps = _difference(
                _filtered(reference.float(), ppd), _filtered(candidates.float(), ppd)
            )
            return maps.masked_fill_(equal, 0.0)
        unequal = [i for i in range(count) if not torch.equal(reference[0], candidates[i])]
        if unequal:
            shared = _filtered(reference.float(), ppd)
            for i in unequal:
                out[i] = _difference(shared, _filtered(candidates[i : i + 1].float(), ppd))[0]
    return out


def flip_map(
    reference: torch.Tensor,
    candidate: torch.Tensor,
    *,
    ppd: float | Sequence[float] = DEFAULT_PPD,
) -> torch.Tensor:
    """Per-pixel LDR-FLIP error: ``(N, 3, H, W)`` x2 sRGB in [0, 1] -> ``(N, 1, H, W)`` float32
    in [0, 1]; 0 where the images agree, exactly 0 for a pair of equal images.

    ``ppd``: pixels per degree, one for the batch or one per pair (pairs that share one are
    filtered together on a GPU); ``app.scores.flip_viewing.resolve_ppd`` checks a user's.
    Raises ``ValueError`` when the shapes differ or are not ``(N, 3, H, W)``, or when ``ppd``
    has not one value per pair.
    """
    if reference.shape != candidate.shape or reference.dim() != 4 or reference.shape[1] != 3:
        raise ValueError(
            "need two (N, 3, H, W) tensors of one shape, "
            f"got {tuple(reference.shape)}, {tuple(candidate.shape)}"
        )
    count, _, height, width = reference.shape
    each = [float(ppd)] * count if isinstance(ppd, int | float) else [float(v) for v in ppd]
    if len(each) != count:
        raise ValueError(f"need one ppd per pair ({count}), got {len(each)}")
    with fp32_math(reference.device), one_blas_thread(reference.device):
        if reference.device.type != "cpu":  # whole groups at once, no wait for the host
            return _flip_on_gpu(reference, candidate, each)
        out = reference.new_zeros(count, 1, height, width, dtype=torch.float32)
        for i in range(count):
            if not torch.equal(reference[i], candidate[i]):
                out[i] = _flip_group(reference[i : i + 1], candidate[i : i + 1], each[i])[0]
        return out


def _flip_on_gpu(
    reference: torch.Tensor, candidate: torch.Tensor, ppds: list[float]
) -> torch.Tensor:
    """The batch in one group per distinct ppd (one group, no indexing, in the usual case);
    equal pairs are set to exactly 0 on the device."""
    count = reference.shape[0]
    equal = (reference == candidate).flatten(1).all(1).view(count, 1, 1, 1)
    if len(set(ppds)) == 1:
        return _flip_group(reference, candidate, ppds[0]).masked_fill_(equal, 0.0)
    out = reference.new_empty(count, 1, *reference.shape[-2:], dtype=torch.float32)
    for value in sorted(set(ppds)):
        rows = torch.tensor([i for i, v in enumerate(ppds) if v == value], device=reference.device)
        out[rows] = _flip_group(reference[rows], candidate[rows], value)
    return out.masked_fill_(equal, 0.0)


def mean_error(error_map: torch.Tensor, *, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each pair's mean of ``error_map`` ``(N, 1, H, W)`` -> ``(N,)`` float64, each pair summed
    on its own (so not by a batch-sized reduction). With ``mask`` ``(N, 1, H, W)`` (nonzero:
    inside): the mean over the pixels inside it, NaN for a pair whose mask selects none
    (``app.imaging.masks`` refuses such masks before any score runs)."""
    if mask is not None:
        inside = mask.bool().expand_as(error_map)
        error_map = torch.where(inside, error_map, 0.0)
        counts = inside.flatten(1).sum(1, dtype=torch.float64)
    else:
        pixels = error_map[0].numel() if len(error_map) else 1
        counts = torch.full((len(error_map),), pixels, device=error_map.device)
    sums = [pair.sum(dtype=torch.float64) for pair in error_map]
    total = torch.stack(sums) if sums else error_map.new_zeros(0, dtype=torch.float64)
    return total / counts.to(device=error_map.device, dtype=torch.float64)


def flip(
    reference: torch.Tensor,
    candidate: torch.Tensor,
    *,
    ppd: float | Sequence[float] = DEFAULT_PPD,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean LDR-FLIP per pair: ``(N, 3, H, W)`` x2 sRGB in [0, 1] -> ``(N,)`` float64 in
    [0, 1]; lower is more alike, 0 for equal images. ``mask`` ``(N, 1, H, W)``: the mean over
    its pixels (``mean_error``). See ``flip_map`` for ``ppd`` and the errors raised."""
    return mean_error(flip_map(reference, candidate, ppd=ppd), mask=mask)
