"""The model runner: one host copy and one transfer per batch, the pinned buffer's reuse, compiled
kernels only for warmed-up shapes (every row count sharing them, no compile on the request path),
and the real inductor compile on this CPU."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo

import app.scoring.runner as runner_module
from app.config import Settings
from app.models.vgg import VGGFeatures
from app.scoring import ModelRunner
from devtools.servers import running_client, service_of
from tests.support.models import cpu_runner

CPU = torch.device("cpu")


def taps_close(a: list[torch.Tensor], b: list[torch.Tensor], rel: float = 1e-4) -> None:
    assert len(a) == len(b) == 5
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        scale = float(y.abs().max()) or 1.0
        assert float((x.float() - y.float()).abs().max()) <= rel * scale


def eager_taps(extractor: VGGFeatures, images: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        return list(extractor(images))


# -- the host-to-device path ---------------------------------------------------------------


def test_upload_is_references_then_candidates_in_the_forward_layout(
    extractor: VGGFeatures,
) -> None:
    refs = [torch.rand(3, 20, 24) for _ in range(2)]
    cands = [torch.rand(3, 20, 24) for _ in range(2)]
    for channels_last in (True, False):
        runner = cpu_runner(extractor, channels_last=channels_last)
        images = runner.upload(refs, cands)
        assert torch.equal(images, torch.stack([*refs, *cands]))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert images.is_contiguous(memory_format=layout)
    cpu_runner(extractor)  # leave the shared extractor channels-last


class FakeEvent:
    """Stands in for a CUDA event: records the order of record/synchronize calls."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def record(self) -> None:
        self.log.append("record")

    def synchronize(self) -> None:
        self.log.append("synchronize")


def meta_runner(monkeypatch: pytest.MonkeyPatch, log: list[str], **kwargs: Any) -> ModelRunner:
    """The CUDA branch run on the CPU: pinning, events and the copy stream monkeypatched,
    ``meta`` as the device; ``log`` records the events' and the stream's calls in order."""

    def copy_event(device: torch.device) -> FakeEvent:
        assert device.type == "meta"  # the runner's device, whatever thread's device is current
        return FakeEvent(log)

    monkeypatch.setattr(runner_module, "copy_event", copy_event)
    monkeypatch.setattr(runner_module, "copy_stream", lambda device: FakeStream(log))
    with torch.device("meta"):
        extractor = VGGFeatures(torch.nn.Sequential(*_vgg_layers()))
    return ModelRunner(extractor, device=torch.device("meta"), pin_memory=True, **kwargs)


class FakeStream:
    """Stands in for the CUDA copy stream: records entering, leaving and handing over."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.log.append("copy stream")

    def __exit__(self, *exc: object) -> None:
        self.log.append("compute stream")

    def hand_over(self, tensor: torch.Tensor) -> None:
        self.log.append(f"hand over {tuple(tensor.shape)} on {tensor.device.type}")


def test_pinned_path_reuses_one_buffer_and_waits_for_the_last_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    allocations: list[int] = []

    def pinned_empty(numel: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        allocations.append(numel)
        return torch.empty(numel, dtype=dtype)

    monkeypatch.setattr(runner_module, "pinned_empty", pinned_empty)
    runner = meta_runner(monkeypatch, log)

    first = [torch.rand(3, 16, 16) for _ in range(4)]
    out = runner.upload(first[:2], first[2:])
    assert out.device.type == "meta" and out.shape == (4, 3, 16, 16)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert log == ["record"]  # no copy stream without overlap
    (pinned,) = runner.host_buffers
    host = pinned[: 4 * 3 * 16 * 16].as_strided(out.shape, out.stride())
    assert torch.equal(host, torch.stack(first))  # one copy of each image, in order

    second = [torch.rand(3, 16, 16) for _ in range(2)]
    runner.upload(second[:1], second[1:])
    assert log == ["record", "synchronize", "record"]  # waited before overwriting
    assert runner.host_buffers == [pinned]  # reused, not reallocated
    runner.upload([torch.rand(3, 32, 32)] * 3, [torch.rand(3, 32, 32)] * 3)
    assert allocations == [4 * 3 * 16 * 16, 6 * 3 * 32 * 32]  # grown once for the larger batch


def test_overlap_alternates_two_buffers_and_copies_on_the_copy_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With overlap the next batch is written into the other buffer while the last copy may
    still be reading the first; each buffer is waited for only before its own reuse, the copy
    runs on the copy stream, and the compute stream is handed the copied batch."""
    log: list[str] = []
    monkeypatch.setattr(runner_module, "pinned_empty", lambda n, dtype=None: torch.empty(n))
    runner = meta_runner(monkeypatch, log, overlap=True)
    batches = [[torch.full((3, 8, 8), float(i)) for _ in range(2)] for i in range(3)]
    uploaded = [runner.upload(batch[:1], batch[1:]) for batch in batches]
    copy = ["copy stream", "record", "compute stream", "hand over (2, 3, 8, 8) on meta"]
    assert log == [*copy, *copy, "synchronize", *copy]  # the third reuses the first buffer
    assert all(images.device.type == "meta" for images in uploaded)
    first, second = runner.host_buffers
    assert first.data_ptr() != second.data_ptr()
    assert float(first[0]) == 2.0 and float(second[0]) == 1.0  # batches 0 and 2, then 1


def test_download_waits_only_when_the_values_are_asked_for(
    monkeypatch: pytest.MonkeyPatch, extractor: VGGFeatures
) -> None:
    log: list[str] = []
    monkeypatch.setattr(
        runner_module, "pinned_empty", lambda n, dtype: torch.empty(n, dtype=dtype, device="meta")
    )
    runner = meta_runner(monkeypatch, log)
    values = torch.rand(5, dtype=torch.float64, device="meta")
    wait = runner.download(values)
    assert log == ["record"]  # the copy is started, nothing waited for yet
    host = wait()
    assert log == ["record", "synchronize"]
    assert host.shape == (5,) and host.dtype == torch.float64
    on_cpu = torch.rand(3)
    assert cpu_runner(extractor).download(on_cpu)() is on_cpu  # the CPU: no copy


def test_waits_for_the_gpu_sleep_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every CUDA event the runner waits on (an upload buffer's last copy, the scores' copy to
    the host) is a blocking one: its wait sleeps in the driver and leaves the core to the decode
    threads (a default event's wait spins at 100 % of a core for as long as the GPU works)."""
    made: list[dict[str, Any]] = []
    recorded_on: list[object] = []

    class Event:
        def __init__(self, **options: Any) -> None:
            made.append(options)

        def record(self, stream: object) -> None:
            recorded_on.append(stream)

        def synchronize(self) -> None:
            pass

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: f"stream of {device}")
    monkeypatch.setattr(runner_module, "copy_stream", lambda device: FakeStream([]))
    monkeypatch.setattr(
        runner_module, "pinned_empty", lambda n, dtype=torch.float32: torch.empty(n, dtype=dtype)
    )
    with torch.device("meta"):
        extractor = VGGFeatures(torch.nn.Sequential(*_vgg_layers()))
    runner = ModelRunner(extractor, device=torch.device("meta"), pin_memory=True)
    runner.upload([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)])
    runner.upload([torch.rand(3, 8, 8)], [torch.rand(3, 8, 8)])  # waits for the first copy
    monkeypatch.setattr(
        runner_module, "pinned_empty", lambda n, dtype: torch.empty(n, dtype=dtype, device="meta")
    )
    runner.download(torch.rand(4, device="meta"))()
    assert len(made) == 3
    assert all(options.get("blocking") is True for options in made), made
    assert recorded_on == ["stream of meta"] * 3  # on the runner's device's stream


def _vgg_layers() -> list[torch.nn.Module]:
    from app.models.vgg import build_vgg19_features

    return list(build_vgg19_features())


def test_forward_accepts_any_layout_and_grad_mode(extractor: VGGFeatures) -> None:
    runner = cpu_runner(extractor)
    images = torch.rand(2, 3, 32, 32)
    expected = eager_taps(extractor, images.contiguous(memory_format=torch.channels_last))
    taps_close(runner.forward(images), expected, rel=1e-5)
    with torch.inference_mode():
        taps_close(runner.forward(images.clone()), expected, rel=1e-5)


# -- compiled kernels: which shapes, which row counts (a counting backend: no inductor) ------


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class CountingBackend:
    """A torch.compile backend that runs the traced graph as it is and counts the traces."""

    def __init__(self) -> None:
        self.traces: list[tuple[str, list[str]]] = []

    def __call__(self, graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        symbols = [str(i) for i in inputs if isinstance(i, torch.SymInt)]
        self.traces.append((threading.current_thread().name, symbols))
        forward: Callable[..., Any] = graph.forward
        return forward


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch, fresh_dynamo: None) -> CountingBackend:
    backend = CountingBackend()
    monkeypatch.setattr(runner_module, "COMPILE_BACKEND", backend)
    return backend


@pytest.fixture
def own_extractor(extractor: VGGFeatures) -> VGGFeatures:
    """A copy of the seeded extractor (compiling must not touch the shared one)."""
    return copy.deepcopy(extractor)


def test_compiles_at_warm_up_only_and_never_on_the_request_path(
    own_extractor: VGGFeatures, counting: CountingBackend
) -> None:
    """The warm-up traces every warmed shape with a dynamic batch axis. Then every row count of
    a warmed shape (1 included) runs a compiled graph without a new trace, and a shape not
    warmed up runs eagerly, never traced; the results match the eager module's."""
    runner = cpu_runner(own_extractor, compile_model=True)
    assert runner.compiling and runner.compiled_shapes == frozenset()
    assert counting.traces == []  # nothing is traced before the warm-up
    runner.warm_up([(32, 32), (24, 40), (32, 32)], batch_size=3)
    assert runner.compiled_shapes == {(32, 32), (24, 40)}
    # Per shape, row counts 6 down to 2 share one graph with a symbolic batch axis; 1 has its own.
    assert len(counting.traces) == 4
    assert sum(1 for _, symbols in counting.traces if symbols) == 2
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (1, 2, 3, 6, 4):
            images = torch.rand(rows, 3, 24, 40)
            taps_close(runner.forward(images), eager_taps(own_extractor, images), rel=1e-5)
        unwarmed = torch.rand(2, 3, 40, 40)
        taps_close(runner.forward(unwarmed), eager_taps(own_extractor, unwarmed), rel=1e-5)
    assert len(counting.traces) == 4
    assert runner.compiled_shapes == {(32, 32), (24, 40)}


def test_a_failed_compile_leaves_the_shape_eager(
    own_extractor: VGGFeatures, monkeypatch: pytest.MonkeyPatch, fresh_dynamo: None
) -> None:
    def broken(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(runner_module, "COMPILE_BACKEND", broken)
    runner = cpu_runner(own_extractor, compile_model=True)
    runner.warm_up([(32, 32)], batch_size=1)
    assert runner.compiled_shapes == frozenset()
    images = torch.rand(1, 3, 32, 32)
    taps_close(runner.forward(images), eager_taps(own_extractor, images), rel=1e-5)


def test_compile_cache_dir_is_inductors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    with torch.device("meta"):
        extractor = VGGFeatures(torch.nn.Sequential(*_vgg_layers()))
    ModelRunner(
        extractor, device=torch.device("meta"), compile_model=True, compile_cache_dir=tmp_path / "c"
    )
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "c")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "c" / "triton")
    assert (tmp_path / "c").is_dir()


def test_ready_only_after_the_warm_shapes_compiled_on_the_worker_thread(
    make_settings: Callable[..., Settings], counting: CountingBackend
) -> None:
    settings = make_settings(compile="on", warmup_sides=["32", "40x24"], max_batch_size=2)
    with running_client(settings) as client:
        runner = service_of(client.app).pipeline.queue.scorer.runner  # type: ignore[union-attr]
        assert runner.compiled_shapes == {(32, 32), (24, 40)}
        assert client.get("/readyz").status_code == 200
    assert {thread for thread, _ in counting.traces} == {"simscore-batcher"}


# -- the real thing: inductor on this CPU --------------------------------------------------


def test_inductor_compiles_the_warm_shape_and_matches_eager(
    extractor: VGGFeatures, tmp_path: Path, fresh_dynamo: None
) -> None:
    """fp32 VGG19 compiled by inductor (frozen weights) for 32 px at batch 2, in a fresh cache:
    about a minute on 2 cores, most of it compiling C++ kernels."""
    own = copy.deepcopy(extractor)
    runner = cpu_runner(own, compile_model=True, compile_cache_dir=tmp_path)
    runner.warm_up([(32, 32)], batch_size=2)
    assert runner.compiled_shapes == {(32, 32)}
    with torch._dynamo.config.patch(error_on_recompile=True):
        for rows in (1, 3, 4):
            images = torch.rand(rows, 3, 32, 32)
            expected = eager_taps(own, images.contiguous(memory_format=torch.channels_last))
            taps_close(runner.forward(images), expected, rel=1e-4)
    assert any(tmp_path.rglob("*.so")), "no compiled kernel in SIMSCORE_COMPILE_CACHE_DIR"
