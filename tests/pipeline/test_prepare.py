"""The prepare stage: one pair per decoded candidate, composited outside the mask; the mask
checked against the scores asked for; a candidate's decode error kept in its place."""

from __future__ import annotations

import pytest
import torch

from app.errors import ImageTooSmall, InvalidRequest, NotAnImage
from app.imaging import PreparedImage
from app.pipeline import DecodedRequest
from app.pipeline.prepare import prepare_pairs
from app.scoring import PairRequest


def _image(value: float) -> PreparedImage:
    return PreparedImage(torch.full((3, 32, 32), value), (32, 32), resized=False)


def _decoded(mask: torch.Tensor | None) -> DecodedRequest:
    error = NotAnImage("candidates[1] is not an image")
    return DecodedRequest(_image(0.0), "key", mask, [_image(1.0), error])


def test_pairs_follow_the_candidates_and_keep_their_errors() -> None:
    pair, error = prepare_pairs(_decoded(None), frozenset({"mse"}))
    assert isinstance(pair, PairRequest) and isinstance(error, NotAnImage)
    assert pair.reference_key == "key" and pair.scores == frozenset({"mse"})
    assert bool(pair.candidate.eq(1).all()) and pair.mask is None


def test_outside_the_mask_the_candidate_is_the_reference() -> None:
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True
    pair, _ = prepare_pairs(_decoded(mask), frozenset({"mse", "ssim"}))
    assert isinstance(pair, PairRequest) and pair.mask is mask
    assert bool(pair.candidate[:, mask[0]].eq(1).all())
    assert bool(pair.candidate[:, ~mask[0]].eq(0).all())


def test_a_mask_without_a_window_centre_is_refused_only_for_ssim() -> None:
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, :3, :] = True  # the top border only: no 11x11 window centre inside
    assert len(prepare_pairs(_decoded(mask), frozenset({"mse", "vgg"}))) == 2
    with pytest.raises(InvalidRequest, match="SSIM window centre"):
        prepare_pairs(_decoded(mask), frozenset({"ssim"}))


def _sized(side: int) -> DecodedRequest:
    image = PreparedImage(torch.zeros(3, side, side + 7), (side + 7, side), resized=False)
    return DecodedRequest(image, "key", None, [image])


def test_a_scores_smallest_side_is_checked_only_when_it_is_asked_for() -> None:
    """30 px: under lpips's 31 (AlexNet), enough for the others; the map's network counts."""
    assert len(prepare_pairs(_sized(30), frozenset({"ssim", "vgg", "lpips_vgg", "dists"}))) == 1
    with pytest.raises(ImageTooSmall, match=r"lpips needs both sides of at least 31 px.*37x30"):
        prepare_pairs(_sized(30), frozenset({"ssim", "lpips"}))
    with pytest.raises(ImageTooSmall, match="lpips needs"):
        prepare_pairs(_sized(30), frozenset({"ssim"}), "lpips")
    (pair,) = prepare_pairs(_sized(31), frozenset({"ssim"}), "lpips")
    assert isinstance(pair, PairRequest) and pair.map_kind == "lpips"
    (plain,) = prepare_pairs(_sized(31), frozenset({"ssim"}), "abs")
    assert isinstance(plain, PairRequest) and plain.map_kind is None  # drawn from the pixels
