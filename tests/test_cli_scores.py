"""``simscore compare --scores lpips,dists``: the opt-in scores in the pair view, the table, the
CSV (their columns after the default five) and the JSON; an unavailable one is a usage error."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from app.cli import main
from app.vocabulary import csv_columns
from devtools.images import distort, encode, photo


@pytest.fixture
def images(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weights_file: Path,
    backbone_files: dict[str, Path],
) -> Path:
    monkeypatch.setenv("SIMSCORE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SIMSCORE_ALEXNET_WEIGHTS", str(backbone_files["alexnet"]))
    monkeypatch.setenv("SIMSCORE_VGG16_WEIGHTS", str(backbone_files["vgg16"]))
    monkeypatch.setenv("SIMSCORE_DEVICE", "cpu")
    monkeypatch.setenv("SIMSCORE_MAX_BATCH_SIZE", "2")
    reference = photo("coffee", 72)
    (tmp_path / "golden.png").write_bytes(encode(reference))
    renders = tmp_path / "renders"
    renders.mkdir()
    for kind in ("jpeg", "blur", "noise"):
        (renders / f"{kind}.png").write_bytes(encode(distort(reference, kind)))
    (renders / "broken.png").write_bytes(b"not an image")
    return tmp_path


def test_a_pair_prints_the_scores_asked_for(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cand = images / "golden.png", images / "renders" / "blur.png"
    assert main(["compare", str(ref), str(cand), "--scores", "lpips,dists,ssim"]) == 0
    lines = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert list(lines) == ["vgg", "style", "ssim", "mse", "psnr", "lpips", "dists"]
    assert lines["vgg"] == "null"
    assert float(lines["lpips"]) > 0 and float(lines["dists"]) > 0
    assert main(["compare", str(ref), str(cand), "--scores", "lpips", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["scores"]["lpips"] == pytest.approx(float(lines["lpips"]), rel=1e-5)
    assert body["model"]["backbones"]["alexnet"]["weights"] == "file"


def test_a_folder_gets_the_extra_columns_in_the_table_and_the_csv(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = images / "scores.csv"
    args = ["compare", str(images / "golden.png"), str(images / "renders"), "--csv", str(out)]
    assert main([*args, "--scores", "lpips_vgg,mse"]) == 1  # broken.png cannot be read
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["vgg", "style", "ssim", "mse", "psnr", "lpips_vgg", "candidate"]
    with out.open() as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == csv_columns(("vgg", "style", "ssim", "mse", "psnr", "lpips_vgg"))
    by_name = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert float(by_name["noise.png"]["lpips_vgg"]) > 0 and by_name["noise.png"]["vgg"] == ""
    assert by_name["broken.png"]["lpips_vgg"] == "" and by_name["broken.png"]["error"]


def test_an_unavailable_score_is_a_usage_error(
    images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIMSCORE_ALEXNET_WEIGHTS", str(images / "missing-alexnet.pth"))
    ref, cand = images / "golden.png", images / "renders" / "blur.png"
    assert main(["compare", str(ref), str(cand), "--scores", "lpips"]) == 2
    err = capsys.readouterr().err
    assert "lpips is not available" in err and "SIMSCORE_ALEXNET_WEIGHTS" in err
    assert "simscore fetch-weights --backbone alexnet" in err
    assert main(["compare", str(ref), str(cand), "--scores", "dists"]) == 0  # VGG16 is there


def test_flip_and_ms_ssim_with_viewing_conditions(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weights_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIMSCORE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SIMSCORE_DEVICE", "cpu")
    reference = photo("coffee", 192)
    ref, cand = tmp_path / "golden.png", tmp_path / "render.png"
    ref.write_bytes(encode(reference))
    cand.write_bytes(encode(distort(reference, "jpeg")))
    assert main(["compare", str(ref), str(cand), "--scores", "flip,ms_ssim", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)["scores"]
    assert 0 < default["flip"] < 1 and 0 < default["ms_ssim"] < 1
    assert main(["compare", str(ref), str(cand), "--scores", "flip", "--ppd", "30", "--json"]) == 0
    near = json.loads(capsys.readouterr().out)["scores"]["flip"]
    assert near != pytest.approx(default["flip"], abs=1e-4)
    assert main(["compare", str(ref), str(cand), "--scores", "flip", "--ppd", "0"]) == 2
    assert "ppd" in capsys.readouterr().err
    small = tmp_path / "small.png"
    small.write_bytes(encode(photo("coffee", 96)))
    assert main(["compare", str(small), str(small), "--scores", "ms_ssim"]) == 2
    assert "161 px" in capsys.readouterr().err


def test_a_folder_whose_reference_is_too_small_for_a_score_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    weights_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A refusal of the whole request (here the reference's size, under ms_ssim's 161 px) is a
    usage error in folder mode too: one line, no traceback."""
    monkeypatch.setenv("SIMSCORE_WEIGHTS", str(weights_file))
    monkeypatch.setenv("SIMSCORE_DEVICE", "cpu")
    reference = photo("coffee", 96)
    (tmp_path / "golden.png").write_bytes(encode(reference))
    renders = tmp_path / "renders"
    renders.mkdir()
    (renders / "a.png").write_bytes(encode(distort(reference, "jpeg")))
    args = ["compare", str(tmp_path / "golden.png"), str(renders), "--scores", "ms_ssim"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "161 px" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
