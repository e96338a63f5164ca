"""``simscore compare`` (pair and folder), ``make-random-weights`` and ``fetch-weights``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from app.cli import main
from app.imaging import prepare_pair
from app.scoring import PairRequest, Scorer
from tests.conftest import distort, encode, photo


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
    assert "3/3" in captured.err  # progress bar


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
