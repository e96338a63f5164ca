"""simscore_client: typed results and errors against the real app, retries against a mock transport,
and the documented CSV job (docs/dashboard.md) run as written."""

from __future__ import annotations

import csv
import email.utils
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from simscore_client import (
    AsyncSimscoreClient,
    AuthenticationError,
    BatchResults,
    BatchSummary,
    CompareResult,
    DifferenceMap,
    InvalidImageError,
    InvalidRequestError,
    OverloadedError,
    RetryPolicy,
    ServerError,
    SimscoreAPIError,
    SimscoreClient,
    UnavailableError,
    Verdict,
    csv_row_of,
    image_bytes,
    retry_after_s,
)
from simscore_client.vocabulary import CSV_COLUMNS

from app.difference_map import viridis_lut
from devtools.images import (
    decode_png,
    encode,
    photo,
    photo_png,
)
from devtools.servers import running, running_client
from devtools.settings import settings_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dashboard.md"


@pytest.fixture(scope="module")
def server(weights_file: Path) -> Iterator[TestClient]:
    with running_client(
        settings_for(weights_file, reference_cache_size=0, max_wait_ms=20)
    ) as test_client:
        yield test_client


@pytest.fixture
def client(server: TestClient) -> SimscoreClient:
    return SimscoreClient(str(server.base_url), http_client=server)


# -- against the app ------------------------------------------------------------------------


def test_compare_takes_paths_bytes_and_pil_images(client: SimscoreClient, tmp_path: Path) -> None:
    reference_path = tmp_path / "golden.png"
    reference_path.write_bytes(photo_png("chelsea"))
    candidate = photo_png("coffee")
    from_path = client.compare(reference_path, candidate)
    from_str = client.compare(str(reference_path), bytearray(candidate))
    from_pil = client.compare(
        Image.fromarray(photo("chelsea", 96, keep_aspect=True)), Image.open(io.BytesIO(candidate))
    )
    assert isinstance(from_path, CompareResult)
    assert from_path.scores == from_str.scores == from_pil.scores
    assert from_path.scores.vgg is not None
    assert from_path.scores.vgg > 0
    assert (from_path.width, from_path.height) == (96, 64)
    assert from_path.vgg_layers is not None
    assert set(from_path.vgg_layers) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}
    assert from_path.model["weights"] == "file"
    assert from_path.map_png is None
    assert from_path.raw["scores"]["vgg"] == from_path.scores.vgg


def test_compare_with_metrics_and_map(client: SimscoreClient) -> None:
    image = photo_png("astronaut")
    result = client.compare(image, image, metrics=["ssim", "mse"], include_map=True, map_kind="abs")
    assert result.scores.vgg is None
    assert result.scores.mse == 0
    assert result.scores.psnr is None
    assert result.map_png is not None
    assert (decode_png(result.map_png) == viridis_lut()[0]).all()


def test_compare_batch_gives_results_and_typed_item_errors(client: SimscoreClient) -> None:
    items = client.compare_batch(
        photo_png("chelsea"), [photo_png("coffee"), b"not an image", photo_png("chelsea")]
    )
    assert len(items) == 3
    first, bad, same = items
    assert isinstance(first, CompareResult)
    assert isinstance(bad, InvalidImageError)
    assert bad.status == 400
    assert "not a PNG" in bad.detail
    assert isinstance(same, CompareResult)
    assert same.scores.mse == 0


def test_difference_map(client: SimscoreClient, tmp_path: Path) -> None:
    result = client.difference_map(photo_png("chelsea"), photo_png("astronaut"), kind="ssim")
    assert isinstance(result, DifferenceMap)
    assert result.kind == "ssim"
    assert result.value_range == (0.0, 1.0)
    assert decode_png(result.png).shape == (64, 96, 3)
    result.save(tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes() == result.png


def test_server_errors_raise_typed_errors_with_the_detail(client: SimscoreClient) -> None:
    with pytest.raises(InvalidImageError) as bad:
        client.compare(b"", photo_png("coffee"))
    assert bad.value.status == 400
    assert "empty" in bad.value.detail
    assert bad.value.request_id
    with pytest.raises(InvalidRequestError, match="size_policy=resize") as strict:
        client.compare(photo_png("chelsea"), photo_png("astronaut"), size_policy="strict")
    assert strict.value.status == 422
    with pytest.raises(InvalidRequestError, match="unknown score"):
        client.compare(photo_png("chelsea"), photo_png("coffee"), metrics="ssim,nope")


def test_the_verdict_and_the_summary_are_typed(client: SimscoreClient) -> None:
    reference, jpeg = photo_png("chelsea"), encode(photo("chelsea", 96, keep_aspect=True), "JPEG")
    plain = client.compare(reference, jpeg)
    assert plain.verdict is None
    assert plain.scores.ssim is not None
    floor = f"ssim>={(plain.scores.ssim + 1) / 2!r}"  # between the JPEG's ssim and 1
    checked = client.compare(reference, jpeg, thresholds=["psnr>=1", floor])
    assert checked.verdict == Verdict(passed=False, failed=(floor,))
    assert client.compare(reference, reference, thresholds="psnr>=30").verdict == Verdict(True, ())

    items = client.compare_batch(reference, [reference, jpeg, b""], thresholds=f"mse<=0,{floor}")
    assert isinstance(items, BatchResults) and isinstance(items, list) and len(items) == 3
    assert items.summary == BatchSummary(passed=1, failed=1, errors=1)
    first, second, bad = items
    assert isinstance(first, CompareResult) and first.verdict == Verdict(True, ())
    assert isinstance(second, CompareResult) and second.verdict is not None
    assert second.verdict.failed == ("mse<=0", floor)
    assert isinstance(bad, InvalidImageError)
    row = dict(zip(CSV_COLUMNS, csv_row_of("second.png", second), strict=True))
    assert (row["passed"], row["failed"]) == ("false", f"mse<=0,{floor}")
    unchecked = client.compare_batch(reference, [jpeg])
    assert unchecked.summary is None
    assert client.compare_batch(reference, [jpeg], thresholds="").summary is None

    with pytest.raises(InvalidRequestError, match=r"thresholds: 'vgg<0\.1': the operator"):
        client.compare(reference, jpeg, thresholds="vgg<0.1")


def test_image_inputs_of_other_types_are_refused() -> None:
    with pytest.raises(TypeError, match="path, bytes or a PIL image"):
        image_bytes(42)  # type: ignore[arg-type]


async def test_async_client_against_the_app(weights_file: Path) -> None:
    settings = settings_for(weights_file, reference_cache_size=0, max_wait_ms=20)
    async with (
        running(settings) as (_, http),
        AsyncSimscoreClient(str(http.base_url), http_client=http) as client,
    ):
        reference, candidate = photo_png("chelsea"), photo_png("coffee")
        result = await client.compare(reference, candidate)
        assert result.scores.ssim is not None
        assert 0 < result.scores.ssim < 1
        items = await client.compare_batch(reference, [candidate, b""])
        assert isinstance(items[0], CompareResult)
        assert items[0].scores.ssim == pytest.approx(result.scores.ssim, rel=1e-6)
        assert isinstance(items[1], InvalidImageError)
        heat = await client.difference_map(reference, candidate, kind="abs")
        assert decode_png(heat.png).shape == (64, 96, 3)
        with pytest.raises(InvalidRequestError):
            await client.compare(photo_png("chelsea"), b"x" * 10, metrics="bogus")


# -- retries, against a mock transport --------------------------------------------------------

OK_BODY: dict[str, Any] = {
    "scores": {"vgg": 0.5, "style": 0.01, "ssim": 0.9, "mse": 0.002, "psnr": 27.0},
    "layers": {"vgg": None, "style": None},
    "image": {
        "width": 32,
        "height": 32,
        "reference": {"width": 32, "height": 32},
        "candidate": {"width": 32, "height": 32},
        "reference_resized": False,
        "candidate_resized": False,
        "resized": False,
    },
    "model": {"name": "vgg19", "weights": "random", "sha256": "0" * 12, "device": "cpu",
              "precision": "fp32"},
    "timing_ms": {"decode_ms": 1, "queue_ms": 1, "compute_ms": 1, "total_ms": 3, "batch_size": 1},
    "reference_cached": False,
    "map_png_base64": None,
}  # fmt: skip


class Script:
    """A mock server answering from a list of (status, headers, body) and recording requests."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, headers, body = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(body, str):
            return httpx.Response(status, headers=headers, text=body)
        return httpx.Response(status, headers=headers, json=body)


def scripted(
    answers: list[tuple[int, dict[str, str], Any]], **kwargs: Any
) -> tuple[SimscoreClient, Script, list[float]]:
    script = Script(answers)
    sleeps: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = SimscoreClient("http://simscore.test", http_client=http, sleep=sleeps.append, **kwargs)
    return client, script, sleeps


def busy(status: int, retry_after: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return status, headers, {"detail": f"busy ({status})", "request_id": "abc"}


@pytest.mark.parametrize("status", [429, 503])
def test_retries_honour_retry_after(status: int) -> None:
    client, script, sleeps = scripted([busy(status, "2"), busy(status, "0"), (200, {}, OK_BODY)])
    result = client.compare(b"ref", b"cand")
    assert result.scores.ssim == 0.9
    assert sleeps == [2.0, 0.0]
    assert len(script.requests) == 3
    # Each retry sends the whole form again, files included.
    for request in script.requests:
        body = request.read()
        assert b'name="reference"' in body
        assert b"cand" in body


def test_retry_after_as_an_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    client, _, sleeps = scripted([busy(503, when), (200, {}, OK_BODY)])
    client.compare(b"ref", b"cand")
    assert sleeps[0] == pytest.approx(30, abs=2)


def test_backoff_without_retry_after_is_exponential_with_jitter() -> None:
    client, _, sleeps = scripted(
        [busy(503), busy(503), busy(503), (200, {}, OK_BODY)],
        retry=RetryPolicy(max_retries=3, backoff_s=0.5, max_wait_s=30),
    )
    client.compare(b"ref", b"cand")
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):
        assert 0.75 * 0.5 * 2**attempt <= slept <= 1.25 * 0.5 * 2**attempt


def test_waits_are_capped() -> None:
    client, _, sleeps = scripted(
        [busy(429, "3600"), (200, {}, OK_BODY)], retry=RetryPolicy(max_wait_s=5)
    )
    client.compare(b"ref", b"cand")
    assert sleeps == [5.0]


@pytest.mark.parametrize(("status", "error"), [(429, OverloadedError), (503, UnavailableError)])
def test_spent_retries_raise_the_typed_error(status: int, error: type[SimscoreAPIError]) -> None:
    client, script, sleeps = scripted([busy(status, "1")], retry=RetryPolicy(max_retries=2))
    with pytest.raises(error) as raised:
        client.compare(b"ref", b"cand")
    assert raised.value.status == status
    assert raised.value.detail == f"busy ({status})"
    assert raised.value.request_id == "abc"
    assert raised.value.retry_after_s == 1.0
    assert len(script.requests) == 3
    assert sleeps == [1.0, 1.0]


@pytest.mark.parametrize(
    ("answer", "error", "detail"),
    [
        ((401, {}, {"detail": "missing or invalid API key"}), AuthenticationError, "API key"),
        ((500, {}, {"detail": "internal error"}), ServerError, "internal error"),
        ((502, {}, "<html>Bad Gateway</html>"), ServerError, "Bad Gateway"),
        ((504, {}, {"detail": "no result within 60 s"}), SimscoreAPIError, "60 s"),
    ],
)
def test_other_errors_are_not_retried(
    answer: tuple[int, dict[str, str], Any], error: type[SimscoreAPIError], detail: str
) -> None:
    client, script, sleeps = scripted([answer, (200, {}, OK_BODY)])
    with pytest.raises(error, match=detail):
        client.compare(b"ref", b"cand")
    assert len(script.requests) == 1
    assert sleeps == []


def test_api_key_and_fields_are_sent() -> None:
    client, script, _ = scripted([(200, {}, OK_BODY)], api_key="s3cret")
    client.compare(b"ref", b"cand", metrics=["vgg", "ssim"], size_policy="strict")
    request = script.requests[0]
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.url.path == "/compare"
    body = request.read()
    assert b"vgg,ssim" in body
    assert b"strict" in body


async def test_async_retries_honour_retry_after() -> None:
    script = Script([busy(429, "1.5"), (200, {}, OK_BODY)])
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    async with AsyncSimscoreClient("http://simscore.test", http_client=http, sleep=sleep) as client:
        result = await client.compare(b"ref", b"cand")
    await http.aclose()
    assert result.scores.vgg == 0.5
    assert sleeps == [1.5]
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 0.25 ", 0.25), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header) == seconds


def test_retry_after_in_the_past_is_zero() -> None:
    assert retry_after_s(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


# -- the documented CSV job -----------------------------------------------------------------


def documented_job() -> Callable[..., int]:
    """The first python block after '<!-- example: score-folder -->' in docs/dashboard.md."""
    text = DOCS.read_text()
    match = re.search(r"<!-- example: score-folder -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/dashboard.md lost its score-folder example"
    namespace: dict[str, Any] = {"__name__": "documented_job"}
    exec(compile(match.group(1), str(DOCS), "exec"), namespace)
    job: Callable[..., int] = namespace["score_folder"]
    return job


def test_documented_csv_job_runs_as_written(client: SimscoreClient, tmp_path: Path) -> None:
    golden, renders = tmp_path / "golden", tmp_path / "renders"
    for name in ("chelsea", "coffee"):
        golden.mkdir(exist_ok=True)
        (golden / f"{name}.png").write_bytes(photo_png(name))
        (renders / name).mkdir(parents=True)
    (renders / "chelsea" / "v1.png").write_bytes(photo_png("chelsea"))
    (renders / "chelsea" / "v2.png").write_bytes(photo_png("astronaut"))
    (renders / "coffee" / "broken.png").write_bytes(b"truncated")
    out = tmp_path / "scores.csv"
    failures = documented_job()(client, golden, renders, out)
    rows = list(csv.DictReader(out.open()))
    assert failures == 1
    assert [(r["golden"], r["render"]) for r in rows] == [
        ("chelsea.png", "chelsea/v1.png"),
        ("chelsea.png", "chelsea/v2.png"),
        ("coffee.png", "coffee/broken.png"),
    ]
    assert float(rows[0]["mse"]) == 0.0
    assert float(rows[1]["vgg"]) > 0
    assert rows[2]["error"]
    assert rows[2]["vgg"] == ""


def test_scores_and_map_kind_are_sent_under_their_names_old_names_too() -> None:
    client, script, _ = scripted([(200, {}, OK_BODY)] * 2)
    client.compare(b"ref", b"cand", scores="ssim", include_map=True, map_kind="abs")
    client.compare(b"ref", b"cand", metrics="ssim", include_map=True, kind="abs")  # type: ignore[call-arg]
    for request in script.requests:
        body = request.read()
        assert b'name="scores"\r\n\r\nssim' in body
        assert b'name="map_kind"\r\n\r\nabs' in body
        assert b'name="metrics"' not in body and b'name="kind"' not in body
    with pytest.raises(TypeError, match="not both"):
        client.compare(b"ref", b"cand", scores="ssim", metrics="mse")
