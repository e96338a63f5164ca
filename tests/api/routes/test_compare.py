"""POST /compare end to end through the ASGI app and its lifespan."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import pytest
from PIL import Image

from app.config import Settings
from app.imaging import prepare_pair
from app.scoring import PairRequest, Scorer
from devtools.http import metric_value
from devtools.http import pair_files as files
from devtools.images import distort, encode, photo
from devtools.servers import running

FIELDS = ("vgg", "style", "ssim", "mse", "psnr")


def engine_scores(scorer: Scorer, reference: bytes, candidate: bytes) -> dict[str, float | None]:
    ref, cand = prepare_pair(
        reference, candidate, max_pixels=40_000_000, max_side=1024, size_policy="resize"
    )
    (s,) = scorer.score([PairRequest(ref.tensor, cand.tensor)])
    return {f: getattr(s, f) for f in FIELDS}


@pytest.mark.parametrize(("name", "kind"), [("astronaut", "jpeg"), ("coffee", "blur")])
async def test_http_scores_equal_the_engine(
    make_settings: Callable[..., Settings], scorer: Scorer, name: str, kind: str
) -> None:
    reference = photo(name, 96)
    ref_png, cand_png = encode(reference), encode(distort(reference, kind))
    async with running(make_settings()) as (_, client):
        response = await client.post("/compare", files=files(ref_png, cand_png))
    assert response.status_code == 200, response.text
    body = response.json()
    expected = engine_scores(scorer, ref_png, cand_png)
    for field in FIELDS:
        assert body["scores"][field] == pytest.approx(expected[field], rel=1e-5)
    assert set(body["layers"]["vgg"]) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}
    assert body["image"] == {
        "width": 96,
        "height": 96,
        "reference": {"width": 96, "height": 96},
        "candidate": {"width": 96, "height": 96},
        "reference_resized": False,
        "candidate_resized": False,
        "resized": False,
        "mask_coverage": None,
    }
    assert body["model"]["name"] == "vgg19"
    assert body["model"]["weights"] == "file"
    assert body["model"]["device"] == "cpu"
    assert len(body["model"]["sha256"]) == 12
    timing = body["timing_ms"]
    assert timing["total_ms"] >= timing["compute_ms"] > 0
    assert response.headers["x-request-id"]


async def test_identical_images_give_null_psnr(make_settings: Callable[..., Settings]) -> None:
    png = encode(photo("chelsea", 64))
    async with running(make_settings()) as (_, client):
        body = (await client.post("/compare", files=files(png, png))).json()
    assert body["scores"]["psnr"] is None
    assert body["scores"]["mse"] == 0.0
    assert body["scores"]["ssim"] == pytest.approx(1.0, abs=1e-6)


async def test_metrics_subset_and_resize_are_reported(
    make_settings: Callable[..., Settings],
) -> None:
    reference = photo("astronaut", 96)
    bigger = encode(photo("astronaut", 128))
    async with running(make_settings()) as (_, client):
        response = await client.post(
            "/compare", files=files(encode(reference), bigger), data={"metrics": "ssim, mse"}
        )
        strict = await client.post(
            "/compare", files=files(encode(reference), bigger), data={"size_policy": "strict"}
        )
    body = response.json()
    assert body["scores"]["vgg"] is None and body["scores"]["style"] is None
    assert body["scores"]["psnr"] is None
    assert body["scores"]["ssim"] is not None and body["scores"]["mse"] is not None
    assert body["layers"] == {"vgg": None, "style": None}
    assert body["image"]["candidate"] == {"width": 128, "height": 128}
    assert body["image"]["candidate_resized"] is True and body["image"]["resized"] is True
    assert strict.status_code == 422
    assert "128x128" in strict.json()["detail"] and "96x96" in strict.json()["detail"]


async def test_mixed_sizes_concurrently_batch_and_match_solo_scores(
    make_settings: Callable[..., Settings],
) -> None:
    sides = (64, 80, 96)
    names = ("astronaut", "chelsea", "coffee", "camera")
    kinds = ("jpeg", "blur", "noise", "colour")
    pairs = []
    for i in range(40):
        reference = photo(names[i % 4], sides[i % 3])
        pairs.append((encode(reference), encode(distort(reference, kinds[(i // 4) % 4], seed=i))))
    settings = make_settings(max_batch_size=8, max_wait_ms=50, queue_size=64)
    async with running(settings) as (_, client):
        solo = [(await client.post("/compare", files=files(r, c))).json() for r, c in pairs[:6]]
        before = (await client.get("/metrics")).text
        responses = await asyncio.gather(
            *(client.post("/compare", files=files(r, c)) for r, c in pairs)
        )
        after = (await client.get("/metrics")).text
        solo += [(await client.post("/compare", files=files(r, c))).json() for r, c in pairs[6:]]
    assert all(r.status_code == 200 for r in responses)
    batches = metric_value(after, "simscore_batch_size_count") - metric_value(
        before, "simscore_batch_size_count"
    )
    pairs_scored = metric_value(after, "simscore_batch_size_sum") - metric_value(
        before, "simscore_batch_size_sum"
    )
    assert pairs_scored == 40
    assert batches < 40  # some batches held more than one pair
    assert max(r.json()["timing_ms"]["batch_size"] for r in responses) > 1
    for response, alone in zip(responses, solo, strict=True):
        for field in FIELDS:
            assert response.json()["scores"][field] == pytest.approx(
                alone["scores"][field], rel=1e-5, abs=1e-12
            ), field


async def test_exif_rotated_candidate_is_compared_upright(
    make_settings: Callable[..., Settings],
) -> None:
    upright = photo("chelsea", 96)[:, :64]
    rotated = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    buffer = io.BytesIO()
    rotated.save(buffer, format="PNG", exif=exif)
    async with running(make_settings()) as (_, client):
        body = (
            await client.post("/compare", files=files(encode(upright), buffer.getvalue()))
        ).json()
    assert body["image"]["resized"] is False
    assert body["scores"]["mse"] == pytest.approx(0.0, abs=1e-12)
