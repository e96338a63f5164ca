"""``simscore compare`` (pair and folder), ``make-random-weights`` and ``fetch-weights``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from app import allocator
from app.cli import _scores_on_cpu, main
from app.imaging import prepare_pair
from app.scoring import PairRequest, Scorer
from app.vocabulary import CSV_COLUMNS
from tests.support.http import pair_files
from tests.support.images import distort, encode, photo
from tests.support.servers import ROOT, running_client
from tests.support.settings import settings_for


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_file: Path) -> Path:
    monkeypatch.setenv("SIMSCORE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SIMSCORE_DEVICE", "cpu")
    monkeypatch.setenv("SIMSCORE_MAX_BATCH_SIZE", "2")
    reference = photo("chelsea", 80)
    (tmp_path / "golden.png").write_bytes(encode(reference))
    renders = tmp_path / "renders"
    renders.mkdir()
    for kind in ("jpeg", "blur", "noise"):
        (renders / f"{kind}.png").write_bytes(encode(distort(reference, kind)))
    (renders / "broken.png").write_bytes(b"not an image")
    (renders / "notes.txt").write_text("ignored")
    return tmp_path


def test_compare_pair_json_matches_the_engine(
    images: Path, scorer: Scorer, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cand = images / "golden.png", images / "renders" / "blur.png"
    assert main(["compare", str(ref), str(cand), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["scores"]) == {"vgg", "style", "ssim", "mse", "psnr"}
    a, b = prepare_pair(
        ref.read_bytes(), cand.read_bytes(), max_pixels=10**8, max_side=1024, size_policy="resize"
    )
    (expected,) = scorer.score([PairRequest(a.tensor, b.tensor)])
    assert out["scores"]["ssim"] == pytest.approx(expected.ssim, rel=1e-5)
    assert out["scores"]["vgg"] == pytest.approx(expected.vgg, rel=1e-5)
    assert out["model"]["weights"] == "file"


def test_compare_folder_writes_a_csv_and_reports_failures(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = images / "scores.csv"
    code = main(["compare", str(images / "golden.png"), str(images / "renders"), "--csv", str(out)])
    assert code == 1  # one candidate could not be read
    rows = {Path(r["candidate"]).name: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"jpeg.png", "blur.png", "noise.png", "broken.png"}
    assert rows["broken.png"]["error"]
    assert 0 < float(rows["blur.png"]["ssim"]) < 1
    captured = capsys.readouterr()
    assert "4/4" in captured.err  # progress bar


def test_make_random_weights_is_loadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w.pth"
    assert main(["make-random-weights", "--out", str(out), "--seed", "5"]) == 0
    digest = capsys.readouterr().out.split()[0]
    assert len(digest) == 64
    assert "0.weight" in torch.load(out, weights_only=True)


def test_fetch_weights_offline_explains_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main(["fetch-weights", "--out", str(tmp_path / "f.pth")]) == 2
    assert "could not be downloaded" in capsys.readouterr().err


def test_compare_answers_as_the_api_does(
    images: Path, weights_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One pipeline and one response schema: the command line's JSON is the API's JSON."""
    ref, cand = images / "golden.png", images / "renders" / "noise.png"
    assert main(["compare", str(ref), str(cand), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    settings = settings_for(weights_file, max_batch_size=2)
    with running_client(settings) as client:
        api = client.post("/compare", files=pair_files(ref.read_bytes(), cand.read_bytes())).json()
    for body in (cli, api):
        body.pop("timing_ms")
    assert cli == api


def test_folder_csv_is_the_shared_format(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = images / "scores.csv"
    main(["compare", str(images / "golden.png"), str(images / "renders"), "--csv", str(out)])
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.reader(lines[1:]))
    assert [r[0] for r in rows] == ["blur.png", "broken.png", "jpeg.png", "noise.png"]
    broken = rows[1]
    assert broken[1:-1] == [""] * (len(CSV_COLUMNS) - 2)
    assert "not a PNG" in broken[-1]
    blur = dict(zip(CSV_COLUMNS, rows[0], strict=True))
    assert blur["width"] == "80" and blur["resized"] == "false" and blur["error"] == ""
    assert repr(float(blur["vgg"])) == blur["vgg"]  # Python's shortest round-trip text


def test_invalid_settings_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIMSCORE_API_KEYS", "")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("simscore: invalid settings: SIMSCORE_API_KEYS")
    assert "holds no key" in err[0]


def test_compare_sets_the_single_arena_before_it_loads_the_model(
    images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.scoring

    events: list[str] = []
    build = app.scoring.build_scorer

    def single_arena() -> bool:
        events.append("single arena")
        return True

    def build_scorer(*args: Any, **kwargs: Any) -> Any:
        events.append("build")
        return build(*args, **kwargs)

    monkeypatch.setattr(allocator, "single_arena", single_arena)
    monkeypatch.setattr(app.scoring, "build_scorer", build_scorer)
    ref, cand = images / "golden.png", images / "renders" / "blur.png"
    assert main(["compare", str(ref), str(cand), "--json"]) == 0
    assert events[:2] == ["single arena", "build"]


@pytest.mark.parametrize(
    ("device", "tuning", "applies"),
    [("cpu", True, True), ("auto", True, True), ("cuda:0", True, False), ("cpu", False, False)],
)
def test_the_allocator_setting_applies_where_the_model_may_run_on_the_cpu(
    device: str, tuning: bool, applies: bool, weights_file: Path
) -> None:
    settings = settings_for(weights_file, device=device, cpu_allocator_tuning=tuning)
    assert _scores_on_cpu(settings) is applies


def test_importing_the_command_line_starts_no_thread_and_loads_no_torch() -> None:
    # the allocator setting binds only threads that have not allocated yet (app/allocator.py)
    probe = (
        "import os, sys, app.cli; "
        "print(len(os.listdir('/proc/self/task')), 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["1", "False", "False"]


def test_compare_is_traced_and_continues_the_callers_traceparent(
    images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.otlp import OtlpReceiver, Traces, otel_env

    trace_id, parent_id = "6e0c63257de34c926f9efcd03927272e", "8a3c60f7d188f8fa"
    with OtlpReceiver() as receiver:
        for name, value in otel_env(receiver, OTEL_SERVICE_NAME="simscore-cli").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TRACEPARENT", f"00-{trace_id}-{parent_id}-01")
        folder = images / "renders"
        assert main(["compare", str(images / "golden.png"), str(folder), "--json"]) == 1
    capsys.readouterr()
    traces = Traces(receiver.spans)
    (run,) = traces.named("simscore compare")
    assert (run.trace_id, run.parent_span_id) == (trace_id, parent_id)
    assert run.resource["service.name"] == "simscore-cli"
    decoded = traces.children(run, "decode")
    assert len(decoded) == 5  # the reference and four candidates, one of them not an image
    assert [s.status for s in decoded].count("ERROR") == 1
    assert len(traces.children(run, "queue")) == 3
    assert traces.batches_of(run)
