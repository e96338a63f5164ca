"""The whole service on CUDA: scores against the CPU's, bf16 with compiled kernels, TF32 and bf16
kept out of the pixel scores, the pinned host buffers and overlapped batches, memory gauges,
out-of-memory recognition. Skipped without
CUDA (every test here is marked ``gpu``); run on a GPU machine with
``python -m pytest -m gpu tests/gpu``."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from app.batching import Batcher
from app.config import Settings
from app.models.vgg import VGGFeatures
from app.scoring import ModelRunner, PairRequest, PairScores, ReferenceCache, Scorer
from app.scoring.device import configure_cuda, is_out_of_memory
from app.vocabulary import Precision
from devtools.http import pair_files, sample
from devtools.images import distort, encode, photo, to_tensor
from devtools.servers import running_client, service_of

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

SIDE = 64
REL_FP32 = 1e-4  # docs/deploy.md: GPU fp32 (TF32 off) against the CPU
REL_BF16 = 0.05


def on_gpu(extractor: VGGFeatures) -> VGGFeatures:
    """A copy for a CUDA runner (a runner moves its extractor; the shared one stays on the CPU
    for the CPU tests that run after these)."""
    return copy.deepcopy(extractor)


def compare(settings: Settings, metrics: str | None = None) -> tuple[dict[str, Any], Any]:
    """Score the same photograph pair through the app; the JSON and the app."""
    image = photo("astronaut", SIDE)
    files = pair_files(encode(image), encode(distort(image, "jpeg")))
    data = {"metrics": metrics} if metrics else {}
    with running_client(settings) as client:
        response = client.post("/compare", files=files, data=data)
        assert response.status_code == 200, response.text
        return response.json(), client.app


@pytest.fixture
def cpu_scores(make_settings: Callable[..., Settings]) -> dict[str, float]:
    body, _ = compare(make_settings(device="cpu"))
    scores: dict[str, float] = body["scores"]
    return scores


@pytest.mark.parametrize("overlap", [False, True])
def test_fp32_on_cuda_agrees_with_the_cpu(
    make_settings: Callable[..., Settings], cpu_scores: dict[str, float], overlap: bool
) -> None:
    settings = make_settings(device="cuda", precision="fp32", tf32=False, overlap_batches=overlap)
    body, app = compare(settings)
    assert service_of(app).pipeline.queue.batcher.overlap is overlap  # type: ignore[union-attr]
    assert body["model"]["device"].startswith("cuda")
    for name, value in cpu_scores.items():
        assert body["scores"][name] == pytest.approx(value, rel=REL_FP32), name
    assert sample(app, "simscore_gpu_memory_reserved_bytes") > 0


def test_bf16_compiled_on_cuda_is_ready_with_its_warm_shape(
    make_settings: Callable[..., Settings], cpu_scores: dict[str, float]
) -> None:
    settings = make_settings(
        device="cuda", precision="bf16", warmup_sides=[str(SIDE)], max_batch_size=2
    )
    with running_client(settings) as client:
        runner = service_of(client.app).pipeline.queue.scorer.runner  # type: ignore[union-attr]
        assert runner.compiling and runner.compiled_shapes == {(SIDE, SIDE)}
    body, _ = compare(settings)
    for name in ("vgg", "style"):
        assert body["scores"][name] == pytest.approx(cpu_scores[name], rel=REL_BF16), name
    for name in ("ssim", "mse"):  # pixel scores: fp32 on the GPU, other kernels than the CPU's
        assert body["scores"][name] == pytest.approx(cpu_scores[name], rel=REL_FP32), name


def test_identical_pair_is_exact_on_cuda(make_settings: Callable[..., Settings]) -> None:
    image = encode(photo("coffee", SIDE))
    with running_client(make_settings(device="cuda", precision="bf16")) as client:
        body = client.post("/compare", files=pair_files(image, image)).json()
    assert body["scores"]["vgg"] == 0.0 and body["scores"]["style"] == 0.0
    assert body["scores"]["ssim"] == 1.0 and body["scores"]["psnr"] is None


def test_tf32_and_bf16_leave_the_pixel_scores_alone(extractor: VGGFeatures) -> None:
    """TF32 and bf16 belong to the VGG19 forward pass: SSIM and MSE on the card are the same
    with them as without (with TF32 in SSIM's filter they would move by percent)."""
    pairs = [
        PairRequest(to_tensor(photo(name, 224)), to_tensor(distort(photo(name, 224), "noise")))
        for name in ("astronaut", "chelsea", "coffee")
    ]
    cuda = torch.device("cuda")
    strict = Scorer(ModelRunner(on_gpu(extractor), device=cuda)).score(pairs)
    modes: list[tuple[Precision, bool]] = [("fp32", True), ("bf16", True), ("bf16", False)]
    for precision, tf32 in modes:
        runner = ModelRunner(on_gpu(extractor), device=cuda, precision=precision, tf32=tf32)
        for got, want in zip(Scorer(runner).score(pairs), strict, strict=True):
            assert got.ssim == pytest.approx(want.ssim, rel=1e-6), (precision, tf32)
            assert got.mse == pytest.approx(want.mse, rel=1e-6), (precision, tf32)


@pytest.mark.parametrize("overlap", [False, True])
def test_uploads_reuse_pinned_buffers(extractor: VGGFeatures, overlap: bool) -> None:
    """One pinned buffer, or two used in turn with overlap (the copy on its own stream); each
    upload arrives whole, whatever the stream it was copied on."""
    runner = ModelRunner(on_gpu(extractor), device=torch.device("cuda"), overlap=overlap)
    assert runner.overlap is overlap
    batches = [[torch.rand(3, 32, 32) for _ in range(4)] for _ in range(3)]
    for batch in batches:
        images = runner.upload(batch[:2], batch[2:])
        assert images.is_cuda and images.is_contiguous(memory_format=torch.channels_last)
        # read at once, on the compute stream: only right if it waited for the copy stream
        assert torch.equal(images.cpu(), torch.stack(batch))
    buffers = runner.host_buffers
    assert len(buffers) == (2 if overlap else 1) and all(b.is_pinned() for b in buffers)
    runner.upload(batches[0][:1], batches[0][1:2])
    assert [b.data_ptr() for b in runner.host_buffers] == [b.data_ptr() for b in buffers]
    scores = Scorer(runner).score([PairRequest(batches[0][0], batches[0][1])])
    assert scores[0].vgg is not None and scores[0].vgg > 0


async def test_overlapped_batches_score_as_one_pair_at_a_time(extractor: VGGFeatures) -> None:
    """Twelve distinct pairs queued at once, batches of two: each next batch is copied while
    the last computes, and every pair gets the scores it gets alone."""
    pairs = [
        PairRequest(to_tensor(photo(name, SIDE)), to_tensor(distort(photo(name, SIDE), kind)))
        for name in ("astronaut", "chelsea", "coffee")
        for kind in ("jpeg", "noise", "blur", "colour")
    ]
    configure_cuda(cudnn_benchmark=False)  # IEEE fp32, as the service sets it
    alone = Scorer(ModelRunner(on_gpu(extractor), device=torch.device("cuda")))
    expected = [alone.score([p])[0] for p in pairs]
    scorer = Scorer(ModelRunner(on_gpu(extractor), device=torch.device("cuda"), overlap=True))
    order: list[str] = []

    def launch(batch: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
        order.append("start")
        scores = scorer.launch(batch)

        def collect() -> list[PairScores]:
            order.append("collect")
            return scores()

        return collect

    batcher: Batcher[PairRequest, PairScores] = Batcher(
        scorer.score,
        group_key=lambda pair: pair.shape,
        max_batch_size=2,
        max_wait_s=0.0,
        queue_size=64,
        launcher=launch,
    )
    batcher.start()
    try:
        outcomes = await asyncio.gather(*batcher.submit_many(pairs, deadline=time.monotonic() + 60))
    finally:
        batcher.close()
    assert all(o.batch_size == 2 for o in outcomes)
    assert order[:3] == ["start", "start", "collect"]  # the second started before the first ended
    for outcome, want in zip(outcomes, expected, strict=True):
        for name in ("vgg", "style", "ssim", "mse"):
            assert getattr(outcome.value, name) == pytest.approx(getattr(want, name), rel=REL_FP32)


def test_launch_queues_a_batch_without_waiting_for_the_gpu(extractor: VGGFeatures) -> None:
    """Everything ``Scorer.launch`` does runs without a host synchronisation (so the next batch
    is prepared while this one computes): every metric, a mask, a repeated reference, references
    from the cache. CUDA's sync debug mode turns torch's synchronisations (a blocking copy,
    ``.item()``, a stream or device sync) into errors; it does not see event waits or
    allocations, which launch leaves to the pinned buffers' own turn."""
    golden = photo("coffee", SIDE)
    mask = torch.zeros(1, SIDE, SIDE, dtype=torch.bool)
    mask[:, 8:40, 16:56] = True
    reference = to_tensor(golden)
    candidate = to_tensor(distort(golden, "noise"))
    batch = [
        PairRequest(reference, to_tensor(distort(golden, "jpeg")), reference_key="golden"),
        PairRequest(reference, torch.where(mask, candidate, reference), reference_key="golden",
                    mask=mask),
        PairRequest(to_tensor(photo("chelsea", SIDE)), to_tensor(photo("astronaut", SIDE))),
    ]  # fmt: skip
    scorer = Scorer(
        ModelRunner(on_gpu(extractor), device=torch.device("cuda"), overlap=True),
        ReferenceCache(8, 1 << 30),
    )
    expected = scorer.score(batch)  # warm: a pinned buffer, constants on the GPU, cache filled
    torch.cuda.set_sync_debug_mode("error")
    try:
        collect = scorer.launch(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    scores = collect()
    assert [s.reference_cached for s in scores] == [True, True, False]
    for got, want in zip(scores, expected, strict=True):
        assert got.vgg == pytest.approx(want.vgg, rel=REL_FP32)
        assert got.ssim == pytest.approx(want.ssim, rel=REL_FP32)


def test_a_real_cuda_out_of_memory_is_recognised() -> None:
    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(torch.OutOfMemoryError) as caught:
        torch.empty(free * 4, dtype=torch.uint8, device="cuda")
    assert is_out_of_memory(caught.value)
    torch.cuda.empty_cache()


OPT_IN = "lpips,lpips_vgg,dists,flip,ms_ssim"


def test_the_opt_in_scores_on_cuda_agree_with_the_cpu(
    network_settings: Callable[..., Settings],
) -> None:
    """lpips, lpips_vgg and dists (their networks on the card, fp32 with TF32 off), flip and
    ms_ssim (no network: their filters on the card) against the same server on the CPU, on a
    192 px photograph pair (ms_ssim needs 161 px); the flip map too."""
    image = photo("coffee", 192)
    files = pair_files(encode(image), encode(distort(image, "jpeg")))
    bodies = {}
    for device in ("cpu", "cuda"):
        settings = network_settings(device=device, precision="fp32", tf32=False)
        with running_client(settings) as client:
            response = client.post("/compare", files=files, data={"scores": OPT_IN})
            assert response.status_code == 200, response.text
            bodies[device] = response.json()
            shown = client.post("/compare/map", files=files, data={"map_kind": "flip"})
            assert shown.status_code == 200, shown.text
    for name in OPT_IN.split(","):
        cpu, gpu = bodies["cpu"]["scores"][name], bodies["cuda"]["scores"][name]
        assert gpu == pytest.approx(cpu, rel=REL_FP32, abs=1e-6), name
