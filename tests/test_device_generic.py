"""Device-generic code, checked on a CPU machine in ways that catch CUDA mistakes.

* Every metric, the extractor, the runner and the scorer on ``device="meta"`` inputs: a tensor
  created on the CPU behind the input's back meets a meta tensor and fails, as it would meet a
  CUDA tensor on a GPU (and cost a transfer, or fail, there).
* Every tensor factory in ``app/`` names its device (``device=...``), except the few listed
  below with the reason they build on the CPU.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from app.models.vgg import VGGFeatures, build_vgg19_features
from app.scores import (
    flip,
    flip_map,
    gram_matrix,
    mean_error,
    ms_ssim,
    mse,
    psnr,
    reference_moments,
    ssim,
    ssim_map,
    style_distance,
    vgg_distance,
)
from app.scoring import ModelRunner, PairRequest, ReferenceCache, Scorer
from app.scoring.sheet import ScoreSheet

META = torch.device("meta")
APP = Path(__file__).resolve().parents[1] / "app"


def meta_extractor() -> VGGFeatures:
    with META:
        return VGGFeatures(build_vgg19_features())


def assert_meta(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        assert tensor.device == META, tensor.device


def test_pixel_metrics_stay_on_the_inputs_device() -> None:
    x = torch.rand(2, 3, 40, 48, device=META)
    y = torch.rand(2, 3, 40, 48, device=META)
    errors = mse(x, y)
    assert_meta(errors, psnr(errors), ssim(x, y), ssim_map(x, y))
    moments = reference_moments(x)
    assert moments.shape == (2, 6, 30, 38)
    assert_meta(moments, ssim(x, y, x_moments=moments))


def test_flip_and_ms_ssim_stay_on_the_inputs_device() -> None:
    """Through the whole-batch path a GPU takes (one ppd, and one per pair), masks included."""
    x = torch.rand(2, 3, 170, 180, device=META)
    y = torch.rand(2, 3, 170, 180, device=META)
    mask = torch.ones(2, 1, 170, 180, dtype=torch.bool, device=META)
    error_map = flip_map(x, y, ppd=[30.0, 67.0])
    assert error_map.shape == (2, 1, 170, 180)
    assert_meta(error_map, mean_error(error_map, mask=mask), flip(x, y))
    assert_meta(ms_ssim(x, y), ms_ssim(x, y, mask=mask))


def test_extractor_and_feature_metrics_stay_on_the_inputs_device() -> None:
    extractor = meta_extractor().eval()
    taps = extractor(torch.rand(4, 3, 32, 32, device=META))
    assert [t.shape[1] for t in taps] == [64, 128, 256, 512, 512]
    assert_meta(*taps)
    fx, fy = [t[:2] for t in taps], [t[2:] for t in taps]
    total, per_tap = vgg_distance(fx, fy)
    assert_meta(total, per_tap)
    for layout in (torch.contiguous_format, torch.channels_last):
        grams = [gram_matrix(t.contiguous(memory_format=layout)) for t in taps]
        assert_meta(*grams)
    style, per_tap = style_distance([gram_matrix(t) for t in fx], [gram_matrix(t) for t in fy])
    assert_meta(style, per_tap)


def test_runner_uploads_to_and_runs_on_its_device() -> None:
    runner = ModelRunner(meta_extractor(), device=META)
    images = runner.upload([torch.rand(3, 32, 32)], [torch.rand(3, 32, 32)])
    assert_meta(images)
    assert_meta(*runner.forward(images))
    runner.warm_up([(32, 32)], batch_size=1)


@pytest.fixture
def sheet_on_meta(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Instead of reading scores back (meta tensors hold no numbers), collect what would be read:
    every score the scorer computed, still on its device."""
    seen: list[torch.Tensor] = []

    def read_back(self: ScoreSheet, download: object, from_cache: object) -> object:
        seen.extend(entry.values for entry in self._entries)
        return lambda: [None] * len(self._pairs)

    monkeypatch.setattr(ScoreSheet, "read_back", read_back)
    return seen


def test_scorer_computes_every_score_on_the_device(sheet_on_meta: list[torch.Tensor]) -> None:
    """The whole batch path: upload, forward, every metric, shared references and the reference
    cache, with nothing made on the CPU along the way."""
    scorer = Scorer(ModelRunner(meta_extractor(), device=META), ReferenceCache(8, 1 << 30))
    golden = torch.rand(3, 32, 32)
    pairs = [
        PairRequest(golden, torch.rand(3, 32, 32), reference_key="golden"),
        PairRequest(golden, torch.rand(3, 32, 32), reference_key="golden"),
        PairRequest(torch.rand(3, 32, 32), torch.rand(3, 32, 32)),
        PairRequest(golden, golden.clone(), reference_key="golden"),  # identical: no compute
        PairRequest(torch.rand(3, 32, 32), torch.rand(3, 32, 32), scores=frozenset({"style"})),
    ]
    for _ in range(2):  # the second time, the golden reference comes from the cache
        sheet_on_meta.clear()
        scorer.score(pairs)
        assert len(sheet_on_meta) == 7  # vgg, style (each with per-tap values), ssim, mse, psnr
        assert_meta(*sheet_on_meta)


# -- tensor factories name their device --------------------------------------------------------

FACTORIES = {
    "tensor",
    "as_tensor",
    "zeros",
    "ones",
    "empty",
    "empty_strided",
    "full",
    "arange",
    "linspace",
    "logspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
}
# (file under app/, enclosing function or "*"): why it builds on the CPU on purpose.
CPU_BY_DESIGN = {
    ("imaging/decode.py", "*"): "decoding makes host tensors; the runner uploads them per batch",
    ("models/vgg.py", "__init__"): "module buffers: they move with the module (.to(device))",
    ("models/weights/backbones.py", "random_state_dict"): "made on the CPU, then loaded",
    ("scores/ssim.py", "gaussian_window"): "11 float64 taps; _window_for moves them to x.device",
}


def factory_calls_without_device() -> list[tuple[str, str, int, str]]:
    """``(file, function, line, call)`` of every ``torch.<factory>(...)`` without ``device=``."""
    found = []
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP).as_posix()
        tree = ast.parse(path.read_text(), filename=str(path))
        for function, call in _calls(tree):
            target = call.func
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "torch"
                and target.attr in FACTORIES
            ):
                continue
            if any(keyword.arg == "device" for keyword in call.keywords):
                continue
            found.append((relative, function, call.lineno, f"torch.{target.attr}"))
    return found


def _calls(tree: ast.AST) -> Iterator[tuple[str, ast.Call]]:
    """Every call with the name of the function (or "<module>") it is in."""

    def walk(node: ast.AST, function: str) -> Iterator[tuple[str, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            if isinstance(child, ast.Call):
                yield function, child
            yield from walk(child, name)

    yield from walk(tree, "<module>")


def test_tensor_factories_in_app_name_their_device() -> None:
    unexplained = [
        f"app/{path}:{line} {call} in {function}() has no device="
        for path, function, line, call in factory_calls_without_device()
        if (path, function) not in CPU_BY_DESIGN and (path, "*") not in CPU_BY_DESIGN
    ]
    assert not unexplained, "\n".join(unexplained)


def test_the_check_sees_factories() -> None:
    """The allow-list is not stale, and the walk finds calls (it would pass vacuously else)."""
    found = {(path, function) for path, function, _, _ in factory_calls_without_device()}
    for path, function in CPU_BY_DESIGN:
        assert any(p == path and function in ("*", f) for p, f in found), (path, function)
