"""The ``mask`` field of /compare, /compare/batch and /compare/map, end to end through the app,
on real photographs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.cli import main
from devtools.http import batch_files, pair_files
from devtools.images import decode_png, distort, encode, photo
from devtools.servers import running_client
from devtools.settings import settings_for

SIDE = 96
FIELDS = ("vgg", "style", "ssim", "mse", "psnr")


@pytest.fixture(scope="module")
def client(weights_file: Path) -> Iterator[TestClient]:
    with running_client(settings_for(weights_file, reference_cache_size=0)) as test_client:
        yield test_client


def corner_mask(side: int = SIDE, mode: str = "L") -> bytes:
    """Everything but the top-left corner, 30 x 40 at 96 px (a clock, say), at any ``side``."""
    inside = np.full((side, side), 255, np.uint8)
    inside[: side * 30 // SIDE, : side * 40 // SIDE] = 0
    if mode == "RGBA":  # the same region in the alpha channel, over a black image
        rgba = np.zeros((side, side, 4), np.uint8)
        rgba[..., 3] = inside
        return encode(Image.fromarray(rgba, "RGBA"))
    return encode(Image.fromarray(inside, "L"))


def scores(client: TestClient, reference: bytes, candidate: bytes, **data: Any) -> Any:
    mask = data.pop("mask", None)
    response = client.post("/compare", files=pair_files(reference, candidate, mask), data=data)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_changes_outside_the_mask_score_as_identical(client: TestClient, mode: str) -> None:
    reference = photo("astronaut", SIDE)
    changed = reference.copy()
    changed[:30, :40] = distort(reference, "noise", strength=4)[:30, :40]  # inside the corner
    body = scores(client, encode(reference), encode(changed), mask=corner_mask(mode=mode))
    assert body["scores"] == {"vgg": 0.0, "style": 0.0, "ssim": 1.0, "mse": 0.0, "psnr": None}
    assert body["image"]["mask_coverage"] == pytest.approx(1 - 30 * 40 / SIDE**2)
    unmasked = scores(client, encode(reference), encode(changed))
    assert unmasked["scores"]["mse"] > 0
    assert unmasked["image"]["mask_coverage"] is None


def corner_mask_in(mode: str, fmt: str = "TIFF") -> bytes:
    """``corner_mask`` in another pixel mode, by that mode's documented rule: the corner has
    zero luminance (LAB: L* 0, with colour), or is transparent (PA, P with a transparent
    entry)."""
    inside = np.ones((SIDE, SIDE), bool)
    inside[:30, :40] = False
    if mode == "LAB":
        lab = np.zeros((SIDE, SIDE, 3), np.uint8)
        lab[..., 0] = np.where(inside, 100, 0)
        lab[..., 1:] = np.where(inside, 128, 200)[..., None]
        image = Image.fromarray(lab, "LAB")
    elif mode == "P-transparent":
        image = Image.fromarray(np.where(inside, 1, 0).astype(np.uint8), "P")
        image.putpalette([255, 255, 255, 255, 255, 255])
        image.info["transparency"] = 0
    else:
        grey = Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), "L")
        image = grey.convert(mode)
    options = {"transparency": 0} if mode == "P-transparent" else {}
    return encode(image, fmt, **options)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("LAB", "TIFF"), ("CMYK", "TIFF"), ("I;16", "PNG"), ("F", "TIFF"), ("P-transparent", "PNG")],
)
def test_masks_of_other_modes_follow_their_rule(client: TestClient, mode: str, fmt: str) -> None:
    """A LAB TIFF mask was a 500 (its conversion to luminance was not guarded)."""
    reference = photo("astronaut", SIDE)
    changed = reference.copy()
    changed[:30, :40] = distort(reference, "noise", strength=4)[:30, :40]
    body = scores(client, encode(reference), encode(changed), mask=corner_mask_in(mode, fmt))
    assert body["scores"]["mse"] == 0.0
    assert body["image"]["mask_coverage"] == pytest.approx(1 - 30 * 40 / SIDE**2)


def test_an_all_white_mask_scores_as_no_mask(client: TestClient) -> None:
    reference = photo("coffee", SIDE)
    candidate = encode(distort(reference, "jpeg"))
    white = encode(np.full((SIDE, SIDE), 255, np.uint8))
    masked = scores(client, encode(reference), candidate, mask=white)
    plain = scores(client, encode(reference), candidate)
    for name in FIELDS:
        assert masked["scores"][name] == pytest.approx(plain["scores"][name], rel=1e-6)
    assert masked["image"]["mask_coverage"] == 1.0


def test_a_mask_of_another_size_is_resized_nearest(client: TestClient) -> None:
    reference = photo("chelsea", SIDE)
    candidate = encode(distort(reference, "blur"))
    small = scores(client, encode(reference), candidate, mask=corner_mask(SIDE // 2))
    exact = scores(client, encode(reference), candidate, mask=corner_mask(SIDE))
    assert small["image"]["mask_coverage"] == pytest.approx(
        exact["image"]["mask_coverage"], abs=0.02
    )


@pytest.mark.parametrize(
    ("mask", "metrics", "words"),
    [
        (np.zeros((SIDE, SIDE), np.uint8), "", "selects no pixel"),
        ("border", "", "no SSIM window centre"),
        (b"not an image", "", "mask"),
    ],
    ids=["empty", "border-only", "garbage"],
)
def test_unusable_masks_are_refused_with_a_detail(
    client: TestClient, mask: np.ndarray | bytes | str, metrics: str, words: str
) -> None:
    if isinstance(mask, str):
        border = np.zeros((SIDE, SIDE), np.uint8)
        border[:3] = 255  # within 5 px of the edge: no 11 x 11 window is centred there
        mask = border
    payload = mask if isinstance(mask, bytes) else encode(mask)
    reference = encode(photo("coffee", SIDE))
    response = client.post("/compare", files=pair_files(reference, reference, payload))
    assert response.status_code in (400, 422)
    assert words in response.json()["detail"]


def test_a_border_mask_is_fine_without_ssim(client: TestClient) -> None:
    border = np.zeros((SIDE, SIDE), np.uint8)
    border[:3] = 255
    reference = photo("coffee", SIDE)
    body = scores(
        client,
        encode(reference),
        encode(distort(reference, "noise")),
        mask=encode(border),
        metrics="mse,vgg",
    )
    assert body["scores"]["mse"] > 0
    assert body["scores"]["ssim"] is None


def test_batch_candidates_share_the_mask(client: TestClient) -> None:
    reference = photo("astronaut", SIDE)
    candidates = [encode(distort(reference, kind)) for kind in ("jpeg", "colour")]
    response = client.post(
        "/compare/batch", files=batch_files(encode(reference), candidates, corner_mask())
    )
    assert response.status_code == 200, response.text
    items = response.json()["results"]
    for item, candidate in zip(items, candidates, strict=True):
        alone = scores(client, encode(reference), candidate, mask=corner_mask())
        assert item["image"]["mask_coverage"] == alone["image"]["mask_coverage"]
        for name in FIELDS:
            assert item["scores"][name] == pytest.approx(alone["scores"][name], rel=1e-5)


def test_maps_show_no_difference_outside_the_mask(client: TestClient) -> None:
    reference = photo("astronaut", SIDE)
    candidate = distort(reference, "noise", strength=3)
    response = client.post(
        "/compare/map",
        files=pair_files(encode(reference), encode(candidate), corner_mask()),
        data={"kind": "abs"},
    )
    assert response.status_code == 200
    heat = decode_png(response.content)
    outside = heat[:30, :40].reshape(-1, 3)
    assert (outside == outside[0]).all()  # one colour: no difference
    assert not (heat[60:, 60:] == outside[0]).all()


def test_the_command_line_takes_a_mask(
    tmp_path: Path,
    weights_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIMSCORE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SIMSCORE_DEVICE", "cpu")
    reference = photo("astronaut", SIDE)
    changed = reference.copy()
    changed[:30, :40] = 0
    paths = {"ref.png": encode(reference), "cand.png": encode(changed), "mask.png": corner_mask()}
    for name, payload in paths.items():
        (tmp_path / name).write_bytes(payload)
    code = main(
        [
            "compare",
            str(tmp_path / "ref.png"),
            str(tmp_path / "cand.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--json",
        ]
    )
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert body["scores"]["mse"] == 0.0 and body["scores"]["psnr"] is None
