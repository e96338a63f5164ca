"""TF32 belongs to the backbones' forward passes alone: every other torch call of a batch (SSIM's
Gaussian filter, the Gram matrices, the masked sums, LPIPS's and DISTS's heads and statistics,
the LPIPS map, FLIP and its map, MS-SSIM, and any metric added later) runs with IEEE fp32 in
every precision mode, whatever the process-wide flags were. Checked on the CPU by reading the
backend flags at every torch call of a scored batch (a ``TorchFunctionMode``), inside and
outside the extractor, and why it matters: TF32's 10-bit mantissa, emulated on the CPU, moves
SSIM by percent against the 1e-4 that GPU scores are held to."""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

import app.scoring.factory as factory
import app.scoring.image_scores as image_scores_module
import app.scoring.network_scores as network_scores_module
import app.scoring.scorer as scorer_module
from app.config import Settings
from app.models.vgg import VGGFeatures
from app.scoring import ModelRunner, PairRequest, ReferenceCache, Scorer
from app.vocabulary import ALL_SCORES, Precision
from devtools.images import distort, photo, to_tensor

SIDE = 168  # ms_ssim needs 161 px
METRICS = ("mse", "psnr", "ssim", "reference_moments", "gram_matrices", "style_distance",
           "vgg_distance")  # fmt: skip
NETWORK_METRICS = ("lpips", "dists", "lpips_map")  # app.scoring.network_scores
IMAGE_METRICS = ("flip_against", "mean_error", "ms_ssim", "ms_ssim_against")  # image_scores


CUDNN_CONV: Any = torch.backends.cudnn.conv  # type: ignore[attr-defined]  # torch >= 2.9


def tf32_enabled() -> tuple[bool, bool]:
    """TF32 allowed for (cuDNN convolutions, CUDA matmuls), read from torch itself."""
    matmul = torch.backends.cuda.matmul.fp32_precision
    return CUDNN_CONV.fp32_precision == "tf32", matmul == "tf32"


@pytest.fixture
def restored_flags() -> Iterator[None]:
    before = CUDNN_CONV.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    yield
    CUDNN_CONV.fp32_precision, torch.backends.cuda.matmul.fp32_precision = before


class FlagsSeen(TorchFunctionMode):
    """Records, for every torch call, whether it ran in the backbone and the TF32 flags then."""

    def __init__(self) -> None:
        super().__init__()
        self.in_backbone = False
        self.calls: list[tuple[str, bool, tuple[bool, bool]]] = []

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = getattr(func, "__name__", str(func))
        self.calls.append((name, self.in_backbone, tf32_enabled()))
        return func(*args, **(kwargs or {}))


def watch(runner: ModelRunner, seen: FlagsSeen, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Mark the runner's forward pass as the backbone, and record the flags each metric function
    of the scorer sees when it is called."""
    forward = runner.forward

    def backbone(images: torch.Tensor, network: str = "vgg19") -> Any:
        seen.in_backbone = True
        try:
            return forward(images, network)
        finally:
            seen.in_backbone = False

    monkeypatch.setattr(runner, "forward", backbone)
    metrics: dict[str, Any] = {}
    watched = (
        (scorer_module, METRICS),
        (network_scores_module, NETWORK_METRICS),
        (image_scores_module, IMAGE_METRICS),
    )
    for module, names in watched:
        for name in names:
            real = getattr(module, name)

            def wrapped(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                metrics.setdefault(_name, set()).add(tf32_enabled())
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, wrapped)
    return metrics


def batch() -> list[PairRequest]:
    """Every path: plain pairs, a masked pair, a repeated (cached) reference, every score and
    the LPIPS map."""
    image = photo("astronaut", SIDE)
    reference = to_tensor(image)
    mask = torch.zeros(1, SIDE, SIDE, dtype=torch.bool)
    mask[:, 40:130, 30:140] = True
    noisy = to_tensor(distort(image, "noise"))
    every = ALL_SCORES
    return [
        PairRequest(reference, to_tensor(distort(image, "jpeg")), every, "a", map_kind="lpips"),
        PairRequest(reference, to_tensor(distort(image, "blur")), every, "a", map_kind="flip"),
        PairRequest(reference, torch.where(mask, noisy, reference), every, "a", mask=mask),
        PairRequest(to_tensor(photo("coffee", SIDE)), to_tensor(photo("chelsea", SIDE)), every),
    ]


def assert_tf32_in_the_backbone_only(seen: FlagsSeen, metrics: dict[str, Any]) -> None:
    inside = {flags for name, in_backbone, flags in seen.calls if in_backbone and name == "conv2d"}
    outside = [  # every call but attribute reads (a tensor's .shape, .device: no arithmetic)
        (name, flags) for name, in_backbone, flags in seen.calls
        if not in_backbone and name != "__get__"
    ]  # fmt: skip
    assert inside == {(True, True)}, "the backbone's convolutions ran without TF32"
    assert outside, "no torch call outside the backbone was seen"
    leaked = sorted({name for name, flags in outside if flags != (False, False)})
    assert not leaked, f"TF32 on outside the backbone, in: {leaked}"
    assert set(metrics) == {*METRICS, *NETWORK_METRICS, *IMAGE_METRICS}, "a metric not reached"
    for name, flags in metrics.items():
        assert flags == {(False, False)}, name


@pytest.mark.usefixtures("restored_flags")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tf32_reaches_the_backbone_and_no_metric(
    extractor: VGGFeatures,
    networks: dict[str, nn.Module],
    monkeypatch: pytest.MonkeyPatch,
    precision: Precision,
) -> None:
    runner = ModelRunner(
        extractor, device=torch.device("cpu"), networks=networks, precision=precision, tf32=True
    )
    scorer = Scorer(runner, ReferenceCache(8, 1 << 30))
    seen = FlagsSeen()
    metrics = watch(runner, seen, monkeypatch)
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # as if someone set it process-wide
    for pairs in (batch(), batch()):  # the second: the reference's taps, grams, moments cached
        with seen:
            collect = scorer.launch(pairs)  # every computation of the batch is queued here
        collect()
    assert_tf32_in_the_backbone_only(seen, metrics)
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # restored as it was


@pytest.mark.usefixtures("restored_flags")
def test_the_service_with_tf32_keeps_it_out_of_the_metrics(
    network_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build_scorer`` on a (stand-in) CUDA device with ``SIMSCORE_TF32=true``: the process-wide
    flags stay IEEE, the runner scopes TF32 around its forward pass."""
    monkeypatch.setattr(factory, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(factory, "_describe", lambda device, flags: "a stand-in GPU")
    real_runner = ModelRunner

    def on_the_cpu(extractor: VGGFeatures, **options: Any) -> ModelRunner:
        options.update(device=torch.device("cpu"), overlap=False)
        return real_runner(extractor, **options)

    monkeypatch.setattr(factory, "ModelRunner", on_the_cpu)
    scorer, _ = factory.build_scorer(network_settings(tf32=True))
    seen = FlagsSeen()
    metrics = watch(scorer.runner, seen, monkeypatch)
    pairs = batch()
    with seen:
        collect = scorer.launch(pairs)
    collect()
    assert_tf32_in_the_backbone_only(seen, metrics)
    assert tf32_enabled() == (False, False)  # process-wide: IEEE
    assert scorer.runner.tf32 is True


@pytest.mark.parametrize(
    ("overrides", "tf32"),
    [({}, False), ({"precision": "bf16"}, True), ({"tf32": True}, True),
     ({"precision": "bf16", "tf32": False}, False)],
)  # fmt: skip
def test_tf32_setting_reaches_the_runner_on_cuda_only(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict[str, Any],
    tf32: bool,
) -> None:
    monkeypatch.setattr(factory, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    settings = make_settings(compile="off", **overrides)
    assert settings.tf32_enabled is tf32
    scorer, _ = factory.build_scorer(settings)
    assert scorer.runner.tf32 is False  # on the CPU, TF32 means nothing


# -- why it matters ------------------------------------------------------------------------------


def round_to_tf32(values: torch.Tensor) -> torch.Tensor:
    """fp32 rounded to TF32's 10-bit mantissa (to nearest, ties to even), as tensor cores read
    the operands of an fp32 convolution or matmul in TF32 mode."""
    bits = values.float().contiguous().view(torch.int32)
    rounded = (bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF
    return rounded.view(torch.float32)


def tf32_filter(stack: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """SSIM's separable Gaussian filter as a TF32 convolution computes it: operands rounded to
    10 mantissa bits, products accumulated in fp32."""
    k, size = stack.shape[1], window.numel()
    taps = round_to_tf32(window)
    horizontal = taps.view(1, 1, 1, size).expand(k, 1, 1, size)
    vertical = taps.view(1, 1, size, 1).expand(k, 1, size, 1)
    rows = F.conv2d(round_to_tf32(stack), horizontal, groups=k)
    return F.conv2d(round_to_tf32(rows), vertical, groups=k)


def test_tf32_rounding_is_what_it_claims() -> None:
    x = torch.tensor([1.0, 1.0 + 2**-10, 1.0 + 2**-11, 1.0 + 3 * 2**-11, 1 + 2**-12, -3.0])
    assert round_to_tf32(x).tolist() == [1.0, 1.0 + 2**-10, 1.0, 1.0 + 2**-9, 1.0, -3.0]


def test_ssim_under_emulated_tf32_moves_by_percent(monkeypatch: pytest.MonkeyPatch) -> None:
    """E[x^2] - E[x]^2 cancels: 10 mantissa bits in the filter move SSIM by 1 to 3 % on real
    photographs at 224 px, a hundred times the 1e-4 GPU scores are held to (docs/deploy.md)."""
    ssim_module = importlib.import_module("app.scores.ssim")
    deviations = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        image = photo(name, 224)
        x = to_tensor(image)[None]
        y = to_tensor(distort(image, "noise", strength=0.5))[None]
        strict = float(ssim_module.ssim(x, y))
        with monkeypatch.context() as patched:
            patched.setattr(ssim_module, "_filter_valid", tf32_filter)
            tf32 = float(ssim_module.ssim(x, y))
        deviations.append(abs(tf32 - strict) / strict)
    assert min(deviations) > 20 * 1e-4
    assert statistics.median(deviations) > 50 * 1e-4


def test_flip_and_ms_ssim_are_the_same_in_every_precision(
    extractor: VGGFeatures, networks: dict[str, nn.Module]
) -> None:
    """They run no network: bf16 (autocast on the backbones) leaves them as fp32 computes them."""
    scored = {}
    for precision in ("fp32", "bf16"):
        runner = ModelRunner(
            extractor, device=torch.device("cpu"), networks=networks, precision=precision
        )
        scored[precision] = Scorer(runner, ReferenceCache(8, 1 << 30)).score(batch())
    for fp32, bf16 in zip(scored["fp32"], scored["bf16"], strict=True):
        assert bf16.flip == pytest.approx(fp32.flip, abs=1e-12)
        assert bf16.ms_ssim == pytest.approx(fp32.ms_ssim, abs=1e-12)
        assert bf16.ssim == pytest.approx(fp32.ssim, abs=1e-12)
