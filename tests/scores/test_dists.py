"""DISTS against ``DISTS_pytorch`` 0.1 on photographs, with the same VGG16 weights on both sides,
and against its formula in float64; identical images; batches; the masked rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.scores import composite, dists, tap_weights
from tests.scores.conftest import PAIR_IDS, PAIRS, SIDE, DistsSides

# The tolerance: 1e-4 relative, 1e-6 absolute for tiny values. The package computes
# 1 - sum(...) in float32, which leaves it about 1e-7 absolute off on these scores (0.003 to
# 0.03 with random backbones); simscore's form is about 1e-9 off (test_dists_is_accurate).
RTOL, ATOL = 1e-4, 1e-6


def score(sides: DistsSides, x: torch.Tensor, y: torch.Tensor, **options: object) -> torch.Tensor:
    with torch.inference_mode():
        fx, fy = sides.network(x), sides.network(y)
        return dists(fx, fy, alpha=sides.alpha, beta=sides.beta, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "x", "y"), PAIRS, ids=PAIR_IDS)
def test_dists_equals_the_package(
    dists_sides: DistsSides, name: str, x: torch.Tensor, y: torch.Tensor
) -> None:
    with torch.no_grad():
        theirs = dists_sides.reference(x, y)
    ours = score(dists_sides, x, y)
    assert float(ours) > 1e-3
    torch.testing.assert_close(ours, theirs.reshape(1), rtol=RTOL, atol=ATOL)


def test_the_first_tap_is_the_image_and_the_rest_match_the_package(
    dists_sides: DistsSides,
) -> None:
    _, x, _ = PAIRS[4]  # the odd-sized crop: L2 pooling's padding at odd sides
    with torch.no_grad():
        theirs = dists_sides.reference.forward_once(x)
        ours = dists_sides.network(x)
    assert len(ours) == len(theirs) == 6
    assert torch.equal(ours[0], x)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_identical_images_score_zero(dists_sides: DistsSides) -> None:
    for _, x, _ in PAIRS:
        assert abs(float(score(dists_sides, x, x.clone()))) <= 1e-6
        with torch.inference_mode():
            taps = dists_sides.network(x)
            same = dists(taps, taps, alpha=dists_sides.alpha, beta=dists_sides.beta)
        assert float(same) == 0.0  # exact by construction: every term is 0 / positive


@pytest.mark.parametrize(("name", "x", "y"), PAIRS, ids=PAIR_IDS)
def test_dists_is_accurate(
    dists_sides: DistsSides, name: str, x: torch.Tensor, y: torch.Tensor
) -> None:
    """Against the package's formula evaluated in float64 on the same taps."""
    with torch.inference_mode():
        fx, fy = dists_sides.network(x), dists_sides.network(y)
        ours = dists(fx, fy, alpha=dists_sides.alpha, beta=dists_sides.beta)
    everywhere = np.ones(x.shape[-2:])
    exact = rule_in_float64(fx, fy, dists_sides.alpha, dists_sides.beta, everywhere)
    assert float(ours) == pytest.approx(exact, rel=1e-5, abs=1e-9)


def test_dists_is_symmetric(dists_sides: DistsSides) -> None:
    _, x, y = PAIRS[1]
    torch.testing.assert_close(
        score(dists_sides, x, y), score(dists_sides, y, x), rtol=1e-6, atol=0
    )


def test_a_pairs_score_does_not_depend_on_its_batch(dists_sides: DistsSides) -> None:
    square = [(x, y) for _, x, y in PAIRS if x.shape[-1] == SIDE]
    xs, ys = torch.cat([x for x, _ in square]), torch.cat([y for _, y in square])
    batched = score(dists_sides, xs, ys)
    alone = torch.cat([score(dists_sides, x, y) for x, y in square])
    torch.testing.assert_close(batched, alone, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        score(dists_sides, xs.flip(0), ys.flip(0)).flip(0), batched, rtol=1e-5, atol=1e-7
    )


def test_bf16_taps_give_fp32_math(dists_sides: DistsSides) -> None:
    _, x, y = PAIRS[0]
    with torch.inference_mode():
        fx = [t.bfloat16() for t in dists_sides.network(x)]
        fy = [t.bfloat16() for t in dists_sides.network(y)]
        low = dists(fx, fy, alpha=dists_sides.alpha, beta=dists_sides.beta)
        wide = dists(
            [t.float() for t in fx],
            [t.float() for t in fy],
            alpha=dists_sides.alpha,
            beta=dists_sides.beta,
        )
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, wide, rtol=0, atol=0)


# -- the masked rule ---------------------------------------------------------------------------


def cell_fractions(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Each cell's mean of the mask's pixels (adaptive average pooling's cell bounds)."""
    height, width = mask.shape
    cells = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            top, bottom = (i * height) // h, -((-(i + 1) * height) // h)
            left, right = (j * width) // w, -((-(j + 1) * width) // w)
            cells[i, j] = mask[top:bottom, left:right].mean()
    return cells


def rule_in_float64(
    fx: list[torch.Tensor],
    fy: list[torch.Tensor],
    alpha: torch.Tensor,
    beta: torch.Tensor,
    mask: np.ndarray,
) -> float:
    """The docstring's masked rule written out in float64 with numpy, channel by channel."""
    a, b = alpha.double().flatten().numpy(), beta.double().flatten().numpy()
    total, offset, similarity = a.sum() + b.sum(), 0, 0.0
    for tx, ty in zip(fx, fy, strict=True):
        x, y = tx[0].double().numpy(), ty[0].double().numpy()
        m = cell_fractions(mask, *x.shape[1:])
        m = m / m.sum()
        for c in range(x.shape[0]):
            mx, my = (m * x[c]).sum(), (m * y[c]).sum()
            vx, vy = (m * (x[c] - mx) ** 2).sum(), (m * (y[c] - my) ** 2).sum()
            cov = (m * x[c] * y[c]).sum() - mx * my
            s1 = (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)
            s2 = (2 * cov + 1e-6) / (vx + vy + 1e-6)
            similarity += (a[offset + c] * s1 + b[offset + c] * s2) / total
        offset += x.shape[0]
    return 1 - similarity


def test_masked_dists_is_the_stated_rule(dists_sides: DistsSides) -> None:
    _, x, y = PAIRS[4]  # odd-sized: cells straddle the mask's edge at every tap
    height, width = x.shape[-2:]
    yy, xx = np.mgrid[:height, :width]
    region = (yy - height / 2) ** 2 + (xx - width / 2.5) ** 2 < (min(height, width) / 3) ** 2
    mask = torch.from_numpy(region)[None, None]
    candidate = composite(x, y, mask)
    with torch.inference_mode():
        fx, fy = dists_sides.network(x), dists_sides.network(candidate)
        ours = dists(
            fx,
            fy,
            alpha=dists_sides.alpha,
            beta=dists_sides.beta,
            masks=tap_weights(mask, [t.shape for t in fx]),
        )
    expected = rule_in_float64(
        fx, fy, dists_sides.alpha, dists_sides.beta, region.astype(np.float64)
    )
    assert float(ours) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_all_ones_mask_is_the_unmasked_score(dists_sides: DistsSides) -> None:
    _, x, y = PAIRS[3]
    mask = torch.ones(1, 1, SIDE, SIDE, dtype=torch.bool)
    with torch.inference_mode():
        fx, fy = dists_sides.network(x), dists_sides.network(y)
        weights = tap_weights(mask, [t.shape for t in fx])
        masked = dists(fx, fy, alpha=dists_sides.alpha, beta=dists_sides.beta, masks=weights)
        plain = dists(fx, fy, alpha=dists_sides.alpha, beta=dists_sides.beta)
    torch.testing.assert_close(masked, plain, rtol=1e-5, atol=1e-7)


def test_a_cell_aligned_mask_is_dists_of_the_cropped_taps(dists_sides: DistsSides) -> None:
    """DISTS's taps at 96 px are 96, 96, 48, 24, 12 and 6 wide: the left half is whole cells at
    every tap, so the masked score is DISTS of the taps cropped to that half."""
    _, x, y = PAIRS[0]
    mask = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    mask[..., : SIDE // 2] = True
    with torch.inference_mode():
        fx, fy = dists_sides.network(x), dists_sides.network(y)
        weights = tap_weights(mask, [t.shape for t in fx])
        masked = dists(fx, fy, alpha=dists_sides.alpha, beta=dists_sides.beta, masks=weights)
        left = [t[..., : t.shape[-1] // 2] for t in fx], [t[..., : t.shape[-1] // 2] for t in fy]
        cropped = dists(*left, alpha=dists_sides.alpha, beta=dists_sides.beta)
    torch.testing.assert_close(masked, cropped, rtol=1e-5, atol=1e-7)


def test_bad_inputs_are_refused(dists_sides: DistsSides) -> None:
    _, x, y = PAIRS[0]
    with torch.inference_mode():
        fx, fy = dists_sides.network(x), dists_sides.network(y)
    with pytest.raises(ValueError, match="one entry per tap"):
        dists(fx, fy[:5], alpha=dists_sides.alpha, beta=dists_sides.beta)
    with pytest.raises(ValueError, match="1475 values"):
        dists(fx, fy, alpha=dists_sides.alpha[:, :100], beta=dists_sides.beta)
    with pytest.raises(ValueError, match="tap 1"):
        dists(fx, [fy[0], fy[1][..., :-1], *fy[2:]], alpha=dists_sides.alpha, beta=dists_sides.beta)


def test_the_shipped_head_is_the_packages(dists_sides: DistsSides) -> None:
    assert torch.equal(dists_sides.alpha, dists_sides.reference.alpha.data)
    assert torch.equal(dists_sides.beta, dists_sides.reference.beta.data)
