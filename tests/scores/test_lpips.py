"""LPIPS (alex and vgg) against the ``lpips`` 0.1.4 package on photographs, with the same backbone
weights on both sides; the spatial map; identical images; batches; the masked rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.scores import composite, lpips, lpips_map, tap_weights
from app.scores.lpips import distance_maps
from devtools.images import disc
from tests.scores.conftest import PAIR_IDS, PAIRS, SIDE, LpipsSides

# The tolerance is 1e-4 relative (1e-6 absolute for tiny values). Scores of distinct
# pairs (> 1e-3 here) are held to 1e-4 relative alone; the maps' pixels may be tiny.
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(params=["alex", "vgg"])
def sides(request: pytest.FixtureRequest) -> LpipsSides:
    fixture = "lpips_alex" if request.param == "alex" else "lpips_vgg"
    result: LpipsSides = request.getfixturevalue(fixture)
    return result


def ours(sides: LpipsSides, x: torch.Tensor, y: torch.Tensor, **options: object) -> torch.Tensor:
    with torch.inference_mode():
        total, _ = lpips(sides.network(x), sides.network(y), heads=sides.heads, **options)  # type: ignore[arg-type]
    return total


@pytest.mark.parametrize(("name", "x", "y"), PAIRS, ids=PAIR_IDS)
def test_lpips_equals_the_package(
    sides: LpipsSides, name: str, x: torch.Tensor, y: torch.Tensor
) -> None:
    with torch.no_grad():
        theirs, per_layer = sides.reference(x, y, retPerLayer=True, normalize=True)
        fx, fy = sides.network(x), sides.network(y)
        total, per_tap = lpips(fx, fy, heads=sides.heads)
    assert float(total) > 1e-3  # a distinct pair: the comparison is not of two zeros
    torch.testing.assert_close(total, theirs.flatten(), rtol=RTOL, atol=0)
    layers = torch.cat([p.flatten() for p in per_layer])
    torch.testing.assert_close(per_tap[0], layers, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("name", "x", "y"), PAIRS[::2], ids=PAIR_IDS[::2])
def test_lpips_map_equals_the_packages_spatial_map(
    sides: LpipsSides, name: str, x: torch.Tensor, y: torch.Tensor
) -> None:
    with torch.no_grad():
        theirs = sides.spatial(x, y, normalize=True)
        ours_map = lpips_map(
            sides.network(x), sides.network(y), heads=sides.heads, size=(x.shape[-2], x.shape[-1])
        )
    assert ours_map.shape == (1, 1, *x.shape[-2:])
    torch.testing.assert_close(ours_map, theirs, rtol=RTOL, atol=ATOL)


def test_identical_images_score_exactly_zero(sides: LpipsSides) -> None:
    _, x, _ = PAIRS[0]
    with torch.inference_mode():
        taps = sides.network(x)
        total, per_tap = lpips(taps, sides.network(x.clone()), heads=sides.heads)
        same_taps, _ = lpips(taps, taps, heads=sides.heads)
        image_map = lpips_map(taps, taps, heads=sides.heads, size=(SIDE, SIDE))
    assert float(total) == 0.0 and float(same_taps) == 0.0
    assert torch.count_nonzero(per_tap) == 0 and torch.count_nonzero(image_map) == 0


def test_lpips_is_symmetric(sides: LpipsSides) -> None:
    _, x, y = PAIRS[1]
    torch.testing.assert_close(ours(sides, x, y), ours(sides, y, x), rtol=1e-6, atol=0)


def test_a_pairs_score_does_not_depend_on_its_batch(sides: LpipsSides) -> None:
    square = [(x, y) for _, x, y in PAIRS if x.shape[-1] == SIDE]
    xs, ys = torch.cat([x for x, _ in square]), torch.cat([y for _, y in square])
    batched = ours(sides, xs, ys)
    alone = torch.cat([ours(sides, x, y) for x, y in square])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-7)
    # the same pair between others scores the same as the first of a batch
    shuffled = ours(sides, xs.flip(0), ys.flip(0)).flip(0)
    torch.testing.assert_close(shuffled, batched, rtol=1e-5, atol=1e-7)


def test_bf16_taps_give_fp32_math(sides: LpipsSides) -> None:
    _, x, y = PAIRS[0]
    with torch.inference_mode():
        fx, fy = sides.network(x), sides.network(y)
        low_x, low_y = [t.bfloat16() for t in fx], [t.bfloat16() for t in fy]
        total, per_tap = lpips(low_x, low_y, heads=sides.heads)
        expected, _ = lpips(
            [t.float() for t in low_x], [t.float() for t in low_y], heads=sides.heads
        )
    assert total.dtype == per_tap.dtype == torch.float32
    torch.testing.assert_close(total, expected, rtol=0, atol=0)


# -- the masked rule ---------------------------------------------------------------------------


def rule_in_float64(
    fx: list[torch.Tensor], fy: list[torch.Tensor], heads: list[torch.Tensor], mask: np.ndarray
) -> float:
    """The docstring's rule written out in float64 with numpy: per tap, unit-normalise, weight
    the squared differences by the head, average over the cells with the mask's area fractions
    at that tap's resolution (each cell's mean of the mask's pixels), sum over taps."""
    total = 0.0
    height, width = mask.shape
    for a, b, head in zip(fx, fy, heads, strict=True):
        x, y = a[0].double().numpy(), b[0].double().numpy()
        x = x / (np.sqrt((x**2).sum(0, keepdims=True)) + 1e-10)
        y = y / (np.sqrt((y**2).sum(0, keepdims=True)) + 1e-10)
        d = (head.double().numpy()[0] * (x - y) ** 2).sum(0)
        h, w = d.shape
        cells = np.empty((h, w))
        for i in range(h):
            for j in range(w):  # adaptive average pooling's cell bounds
                top, bottom = (i * height) // h, -((-(i + 1) * height) // h)
                left, right = (j * width) // w, -((-(j + 1) * width) // w)
                cells[i, j] = mask[top:bottom, left:right].mean()
        total += float((cells * d).sum() / cells.sum())
    return total


@pytest.mark.parametrize(("name", "x", "y"), [PAIRS[0], PAIRS[4]], ids=[PAIR_IDS[0], PAIR_IDS[4]])
def test_masked_lpips_is_the_stated_rule(
    sides: LpipsSides, name: str, x: torch.Tensor, y: torch.Tensor
) -> None:
    region = disc(*x.shape[-2:])
    mask = torch.from_numpy(region)[None, None]
    candidate = composite(x, y, mask)
    with torch.inference_mode():
        fx, fy = sides.network(x), sides.network(candidate)
        total, _ = lpips(fx, fy, heads=sides.heads, masks=tap_weights(mask, [t.shape for t in fx]))
    expected = rule_in_float64(fx, fy, sides.heads, region.astype(np.float64))
    assert float(total) == pytest.approx(expected, rel=1e-5)


def test_all_ones_mask_is_the_unmasked_score(sides: LpipsSides) -> None:
    _, x, y = PAIRS[2]
    mask = torch.ones(1, 1, *x.shape[-2:], dtype=torch.bool)
    with torch.inference_mode():
        fx, fy = sides.network(x), sides.network(y)
        masked, _ = lpips(fx, fy, heads=sides.heads, masks=tap_weights(mask, [t.shape for t in fx]))
        plain, _ = lpips(fx, fy, heads=sides.heads)
    torch.testing.assert_close(masked, plain, rtol=1e-6, atol=0)


def test_a_cell_aligned_mask_is_the_mean_over_its_cells(lpips_vgg: LpipsSides) -> None:
    """VGG16's taps at 96 px are 96, 48, 24, 12 and 6 wide: the left half of the image is whole
    cells at every tap, so the masked score is LPIPS's mean over exactly those cells."""
    _, x, y = PAIRS[0]
    mask = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    mask[..., : SIDE // 2] = True
    with torch.inference_mode():
        fx, fy = lpips_vgg.network(x), lpips_vgg.network(y)
        masked, per_tap = lpips(
            fx, fy, heads=lpips_vgg.heads, masks=tap_weights(mask, [t.shape for t in fx])
        )
        maps = distance_maps(fx, fy, heads=lpips_vgg.heads)
    halves = torch.stack([d[..., : d.shape[-1] // 2].mean() for d in maps])
    torch.testing.assert_close(per_tap[0], halves, rtol=1e-6, atol=0)
    torch.testing.assert_close(masked, halves.sum()[None], rtol=1e-6, atol=0)


# -- input checks ------------------------------------------------------------------------------


def test_mismatched_taps_and_heads_are_refused(lpips_alex: LpipsSides) -> None:
    _, x, y = PAIRS[0]
    with torch.inference_mode():
        fx, fy = lpips_alex.network(x), lpips_alex.network(y)
    with pytest.raises(ValueError, match="one entry per tap"):
        lpips(fx, fy[:4], heads=lpips_alex.heads)
    with pytest.raises(ValueError, match="needs a head of shape"):
        lpips(fx, fy, heads=lpips_alex.heads[::-1])
    with pytest.raises(ValueError, match="masks need one entry per tap"):
        lpips(fx, fy, heads=lpips_alex.heads, masks=[])


def test_the_shipped_heads_are_the_packages(sides: LpipsSides) -> None:
    for head, lin in zip(sides.heads, sides.reference.lins, strict=True):
        assert torch.equal(head, lin.model[-1].weight)
