"""LDR-FLIP against NVIDIA's own implementation (flip-evaluator 1.7, C++) on real photographs,
and its properties: identical images, batches, masks, viewing conditions, precision modes."""

from __future__ import annotations

import functools

import flip_evaluator
import numpy as np
import pytest
import torch

from app.scores import flip, flip_map, mean_error
from app.scores.flip import _flip_group
from app.scores.flip_viewing import DEFAULT_PPD, pixels_per_degree, resolve_ppd
from devtools.images import distort, photo, to_tensor

MEAN_TOLERANCE = 1e-4  # the bound on the score; measured: under 4e-6
# Per pixel. Both sides compute in float32 in different orders; where the two colours nearly
# agree, HyAB^0.7 magnifies that rounding (d/dx x^0.7 is unbounded at 0). Measured: at most
# 1.4e-5 at 30 ppd and above, 1.3e-4 at 4.5 ppd; mean difference: under 1e-6 (1.2e-5 for the
# 1 px image, where the mean is that one pixel's difference: a map under MAP_MEAN_PIXELS is
# held to the per-pixel bound alone).
MAP_TOLERANCE = 3e-4
MAP_MEAN_TOLERANCE = 1e-5
MAP_MEAN_PIXELS = 64


def assert_maps_close(got: torch.Tensor, expected: np.ndarray) -> None:
    difference = np.abs(got.numpy().astype(np.float64) - expected)
    assert difference.max() <= MAP_TOLERANCE
    if difference.size >= MAP_MEAN_PIXELS:
        assert difference.mean() <= MAP_MEAN_TOLERANCE


# (photograph, distortion, crop (rows, columns) or None): a JPEG candidate among them, odd crops.
CASES = (
    ("astronaut", "jpeg", None),
    ("coffee", "noise", None),
    ("chelsea", "blur", None),
    ("rocket", "colour", (161, 203)),
    ("coffee", "jpeg", (203, 161)),
)


def pair(name: str, kind: str, crop: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    reference = photo(name)
    candidate = distort(reference, kind)
    if crop is not None:
        rows, columns = crop
        reference, candidate = reference[:rows, :columns], candidate[:rows, :columns]
    return np.ascontiguousarray(reference), np.ascontiguousarray(candidate)


def as_float(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 sRGB in [0, 1], as the reference tool takes it."""
    return np.ascontiguousarray(image.astype(np.float32) / 255)


@functools.cache
def reference_flip(
    name: str, kind: str, crop: tuple[int, int] | None, parameters: tuple[tuple[str, object], ...]
) -> tuple[np.ndarray, float]:
    """flip_evaluator's error map (H, W) and its mean, for ``CASES``-style arguments."""
    reference, candidate = pair(name, kind, crop)
    settings = {key: list(v) if isinstance(v, tuple) else v for key, v in parameters}
    error_map, mean, _ = flip_evaluator.evaluate(
        as_float(reference), as_float(candidate), "LDR", applyMagma=False, parameters=settings
    )
    return error_map[..., 0], float(mean)


def ours(reference: np.ndarray, candidate: np.ndarray, **kwargs: float) -> torch.Tensor:
    return flip_map(to_tensor(reference)[None], to_tensor(candidate)[None], **kwargs)[0, 0]


@pytest.mark.parametrize(("name", "kind", "crop"), CASES)
def test_flip_matches_the_reference_implementation(
    name: str, kind: str, crop: tuple[int, int] | None
) -> None:
    expected_map, expected_mean = reference_flip(name, kind, crop, ())
    reference, candidate = pair(name, kind, crop)
    error_map = ours(reference, candidate)
    assert error_map.shape == expected_map.shape
    assert_maps_close(error_map, expected_map)
    score = flip(to_tensor(reference)[None], to_tensor(candidate)[None]).item()
    assert score == pytest.approx(expected_mean, abs=MEAN_TOLERANCE)
    assert 0.0 < score < 1.0


@pytest.mark.parametrize(
    ("ours_kwargs", "parameters"),
    [
        (
            {"distance_m": 1.0, "monitor_width_m": 0.6, "monitor_width_px": 2560},
            (("vc", (1.0, 2560, 0.6)),),
        ),
        ({"ppd": 30.0}, (("ppd", 30.0),)),
        ({"ppd": 150.0}, (("ppd", 150.0),)),
        ({"ppd": 4.5}, (("ppd", 4.5),)),
        ({"ppd": 1.5}, (("ppd", 1.5),)),  # edge filter 0 / 0: the points alone, as the tool
        ({"ppd": 1.0}, (("ppd", 1.0),)),
    ],
)  # fmt: skip
def test_flip_under_other_viewing_conditions_matches_the_reference(
    ours_kwargs: dict[str, float], parameters: tuple[tuple[str, object], ...]
) -> None:
    case = ("chelsea", "jpeg", (161, 203))
    expected_map, expected_mean = reference_flip(*case, parameters)
    ppd = resolve_ppd(**ours_kwargs)
    reference, candidate = pair(*case)
    error_map = ours(reference, candidate, ppd=ppd)
    assert_maps_close(error_map, expected_map)
    assert mean_error(error_map[None, None]).item() == pytest.approx(
        expected_mean, abs=MEAN_TOLERANCE
    )


def test_default_viewing_conditions_are_the_reference_tools() -> None:
    reference, candidate = pair("rocket", "noise", (32, 32))
    _, _, parameters = flip_evaluator.evaluate(as_float(reference), as_float(candidate), "LDR")
    assert parameters["ppd"] == DEFAULT_PPD == pixels_per_degree()
    _, _, parameters = flip_evaluator.evaluate(
        as_float(reference), as_float(candidate), "LDR", parameters={"vc": [1.0, 2560, 0.6]}
    )
    ppd = pixels_per_degree(distance_m=1.0, monitor_width_m=0.6, monitor_width_px=2560)
    assert parameters["ppd"] == ppd


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (12, 9), (128, 128)])
def test_small_images_are_scored_as_the_reference_scores_them(shape: tuple[int, int]) -> None:
    """Smaller than the 21-tap filters: the border pixels repeat, as the reference clamps."""
    reference, candidate = pair("astronaut", "noise", shape)
    error_map, mean, _ = flip_evaluator.evaluate(
        as_float(reference), as_float(candidate), "LDR", applyMagma=False
    )
    got = ours(reference, candidate)
    assert_maps_close(got, error_map[..., 0])
    assert mean_error(got[None, None]).item() == pytest.approx(mean, abs=MEAN_TOLERANCE)


def test_identical_images_score_exactly_zero() -> None:
    image = to_tensor(photo("coffee", 96))[None]
    assert flip(image, image.clone()).tolist() == [0.0]
    assert not flip_map(image, image.clone()).any()


def test_a_pair_scores_the_same_alone_and_in_any_batch() -> None:
    """Each pair is computed on its own on the CPU: the same bits by construction."""
    images = [photo(name, 80) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    kinds = ("jpeg", "blur", "noise", "colour")
    references = torch.stack([to_tensor(i) for i in images])
    candidates = torch.stack([to_tensor(distort(i, k)) for i, k in zip(images, kinds, strict=True)])
    candidates[2] = references[2]  # an equal pair among them
    batch = flip_map(references, candidates)
    for index in range(4):
        alone = flip_map(references[index : index + 1], candidates[index : index + 1])
        assert torch.equal(alone[0], batch[index])
    reordered = flip_map(references.flip(0), candidates.flip(0))
    assert torch.equal(reordered, batch.flip(0))
    assert flip(references, candidates)[2].item() == 0.0


def test_the_gpus_whole_batch_path_gives_the_pairs_maps() -> None:
    """On CUDA the batch goes through at once (``_flip_group``); checked here on the CPU."""
    images = [photo(name, 72) for name in ("astronaut", "chelsea", "coffee")]
    references = torch.stack([to_tensor(i) for i in images])
    candidates = torch.stack([to_tensor(distort(i, "jpeg")) for i in images])
    together = _flip_group(references, candidates, DEFAULT_PPD)
    torch.testing.assert_close(together, flip_map(references, candidates), rtol=0, atol=1e-6)


def test_each_pair_may_have_its_own_viewing_conditions() -> None:
    images = [photo(name, 64) for name in ("astronaut", "chelsea", "coffee")]
    references = torch.stack([to_tensor(i) for i in images])
    candidates = torch.stack([to_tensor(distort(i, "noise")) for i in images])
    ppds = [30.0, DEFAULT_PPD, 30.0]
    together = flip_map(references, candidates, ppd=ppds)
    for index, ppd in enumerate(ppds):
        alone = flip_map(references[index : index + 1], candidates[index : index + 1], ppd=ppd)
        assert torch.equal(together[index], alone[0])
    assert not torch.equal(together[0], flip_map(references[:1], candidates[:1])[0])
    with pytest.raises(ValueError, match="one ppd per pair"):
        flip_map(references, candidates, ppd=[30.0, 40.0])


def test_masked_flip_is_the_mean_of_the_map_over_the_mask() -> None:
    reference = to_tensor(photo("chelsea", 96))[None].repeat(2, 1, 1, 1)
    candidate = torch.stack(
        [to_tensor(distort(photo("chelsea", 96), k)) for k in ("jpeg", "noise")]
    )
    yy, xx = np.mgrid[:96, :96]
    mask = torch.from_numpy(np.stack([(yy - 40) ** 2 + (xx - 50) ** 2 < 400, yy > 70]))[:, None]
    error_map = flip_map(reference, candidate).numpy().astype(np.float64)
    expected = [error_map[i, 0][mask[i, 0].numpy()].mean() for i in range(2)]
    got = flip(reference, candidate, mask=mask)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=0)
    full = torch.ones_like(mask)
    np.testing.assert_allclose(
        flip(reference, candidate, mask=full), flip(reference, candidate), rtol=1e-12
    )


def test_flip_is_computed_in_float32_under_autocast() -> None:
    """The service's bf16 mode must not reach FLIP's colour pipeline."""
    reference = to_tensor(photo("astronaut", 64))[None]
    candidate = to_tensor(distort(photo("astronaut", 64), "jpeg"))[None]
    plain = flip_map(reference, candidate)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = flip_map(reference, candidate)
    assert autocast.dtype == torch.float32
    assert torch.equal(plain, autocast)


def test_inputs_outside_zero_one_are_clamped_as_the_reference_does() -> None:
    reference = to_tensor(photo("coffee", 48))[None]
    candidate = to_tensor(distort(photo("coffee", 48), "noise"))[None]
    stretched = candidate * 1.5 - 0.25
    assert torch.equal(flip_map(reference, stretched), flip_map(reference, stretched.clamp(0, 1)))


@pytest.mark.parametrize(
    ("reference", "candidate"),
    [((1, 3, 8, 8), (1, 3, 8, 9)), ((3, 8, 8), (3, 8, 8)), ((1, 1, 8, 8), (1, 1, 8, 8))],
)
def test_flip_refuses_tensors_it_cannot_score(
    reference: tuple[int, ...], candidate: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="N, 3, H, W"):
        flip_map(torch.rand(reference), torch.rand(candidate))
