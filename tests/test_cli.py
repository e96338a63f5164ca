"""``simscore compare`` (pair and folder), ``make-random-weights`` and ``fetch-weights``."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch

from app import allocator
from app.cli import _scores_on_cpu, main
from app.imaging import prepare_pair
from app.scoring import PairRequest, Scorer
from app.vocabulary import CSV_COLUMNS
from devtools.http import pair_files
from devtools.images import distort, encode, photo
from devtools.servers import ROOT, running_client
from devtools.settings import settings_for


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


def test_fetch_weights_names_the_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    urls: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        urls.append(url)
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main(["fetch-weights", "--backbone", "alexnet"]) == 2
    assert "AlexNet ImageNet weights" in capsys.readouterr().err
    assert urls == ["https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"]
    assert main(["fetch-weights", "--backbone", "all"]) == 2  # each is tried
    assert [u.rsplit("/", 1)[1] for u in urls[1:]] == [
        "vgg19-dcbb9e9d.pth",
        "alexnet-owt-7be5be79.pth",
        "vgg16-397923af.pth",
    ]
    assert main(["fetch-weights", "--backbone", "resnet"]) == 2
    assert "unknown backbone 'resnet'; choose from vgg19, alexnet, vgg16 or all" in (
        capsys.readouterr().err
    )
    assert main(["fetch-weights", "--backbone", "all", "--out", str(tmp_path / "x.pth")]) == 2


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


# -- thresholds, exit statuses, JUnit --------------------------------------------------------


def scores_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    body: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, body


def test_a_pair_exits_0_when_it_passes_and_1_when_it_fails(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cand = str(images / "golden.png"), str(images / "renders" / "blur.png")
    code, body = scores_of(capsys, ["compare", ref, cand, "--json", "--scores", "ssim"])
    assert code == 0 and body["verdict"] is None
    ssim = body["scores"]["ssim"]
    assert main(["compare", ref, cand, "--threshold", f"ssim>={ssim * 0.9!r}"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "verdict pass"
    tight = f"ssim>={ssim * 1.1!r}"
    assert (
        main(["compare", ref, cand, "--threshold", f"psnr>=1,{tight}", "--threshold", "mse<=1"])
        == 1
    )
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"verdict FAIL {tight} (ssim = {ssim:.6g})"
    code, body = scores_of(capsys, ["compare", ref, cand, "--json", "--threshold", tight])
    assert code == 1 and body["verdict"] == {"passed": False, "failed": [tight]}


def test_identical_images_pass_a_psnr_floor(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = str(images / "golden.png")
    code, body = scores_of(capsys, ["compare", ref, ref, "--json", "--threshold", "psnr>=30"])
    assert code == 0
    assert body["scores"]["psnr"] is None and body["verdict"]["passed"]


@pytest.mark.parametrize(
    ("conditions", "named"),
    [
        (["blur<=0.1"], "'blur<=0.1': unknown score 'blur'"),
        (["vgg<0.05"], "'vgg<0.05': the operator must be <= or >=, not '<'"),
        (["psnr>=inf"], "'psnr>=inf': the bound must be a finite number"),
        (["ssim>=nan"], "'ssim>=nan': the bound must be a finite number"),
        (["vgg<=0.05,,ssim>=0.9"], "condition 2 of 'vgg<=0.05,,ssim>=0.9' is empty"),
        (["ssim>=0.9", "ssim>=0.8"], "'ssim>=0.8' repeats a condition on ssim"),
    ],
)
def test_a_bad_condition_exits_2_with_one_line_naming_it(
    images: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    conditions: list[str],
    named: str,
) -> None:
    import app.scoring

    def build_scorer(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a bad condition must stop the command before the model loads")

    monkeypatch.setattr(app.scoring, "build_scorer", build_scorer)
    options = [part for condition in conditions for part in ("--threshold", condition)]
    for candidate in ("renders", "renders/blur.png"):
        argv = ["compare", str(images / "golden.png"), str(images / candidate), *options]
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("simscore: --threshold: ") and named in lines[0]


def test_a_missing_file_exits_2(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "compare",
        str(images / "golden.png"),
        str(images / "nowhere.png"),
        "--threshold",
        "ssim>=0",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere.png" in err[0]


def test_a_folder_exits_0_when_every_candidate_passes(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = images / "good"
    good.mkdir()
    for name in ("jpeg.png", "noise.png"):
        (good / name).write_bytes((images / "renders" / name).read_bytes())
    ref = str(images / "golden.png")
    assert main(["compare", ref, str(good), "--threshold", "ssim>=0.01,vgg<=1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[-2:] == ["verdict", "candidate"]
    assert [line.split()[-2:] for line in out[1:]] == [["pass", "jpeg.png"], ["pass", "noise.png"]]
    assert main(["compare", ref, str(good), "--threshold", "ssim>=0.9999"]) == 1


def test_the_junit_report_agrees_with_the_scores(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One testcase per candidate named by its file; a failure naming exactly the failed
    conditions with their scores; an error for the unreadable one; counts that agree."""
    report, table = images / "junit.xml", images / "scores.csv"
    ref, folder = str(images / "golden.png"), str(images / "renders")
    code, plain = scores_of(capsys, ["compare", ref, folder, "--json"])
    assert code == 1 and "summary" not in plain
    scores = {item["candidate"]: item["scores"] for item in plain["results"] if "scores" in item}
    floor = sorted(s["ssim"] for s in scores.values())[1]  # the worst candidate fails ssim
    conditions = f"ssim>={floor!r},psnr>=20"
    argv = ["compare", ref, folder, "--json", "--threshold", conditions]
    code, body = scores_of(capsys, [*argv, "--junit", str(report), "--csv", str(table)])
    assert code == 1
    verdicts = {item["candidate"]: item.get("verdict") for item in body["results"]}
    expected = {
        name: [
            c
            for c, ok in ((f"ssim>={floor!r}", s["ssim"] >= floor), ("psnr>=20", s["psnr"] >= 20))
            if not ok
        ]
        for name, s in scores.items()
    }
    assert {n: v["failed"] for n, v in verdicts.items() if v} == expected
    assert verdicts["broken.png"] is None
    failing = sum(bool(f) for f in expected.values())
    assert failing >= 1
    assert body["summary"] == {"passed": 3 - failing, "failed": failing, "errors": 1}

    root = ET.parse(report).getroot()
    (suite,) = root.findall("testsuite")
    for node in (root, suite):
        assert node.get("tests") == "4"
        assert node.get("failures") == str(failing)
        assert node.get("errors") == "1"
    cases = {case.get("name") or "": case for case in suite.findall("testcase")}
    assert sorted(cases) == ["blur.png", "broken.png", "jpeg.png", "noise.png"]
    broken_error = cases["broken.png"].find("error")
    assert broken_error is not None and "not a PNG" in (broken_error.get("message") or "")
    for name, failed in expected.items():
        failure = cases[name].find("failure")
        if not failed:
            assert failure is None and cases[name].find("error") is None, name
            continue
        assert failure is not None, name
        message = failure.get("message") or ""
        named = re.findall(r"(\w+[<>]=[^ ]+) \((\w+) = ([^)]+)\)", message)
        assert [condition for condition, _, _ in named] == failed, message
        for _, score, shown in named:
            assert float(shown) == pytest.approx(scores[name][score], rel=1e-5), message
        assert f"ssim={scores[name]['ssim']!r}" in (failure.text or "")

    rows = {r["candidate"]: r for r in csv.DictReader(table.open())}
    assert rows["broken.png"]["passed"] == "" and rows["broken.png"]["error"]
    for name, failed in expected.items():
        assert rows[name]["passed"] == ("false" if failed else "true")
        assert rows[name]["failed"] == ",".join(failed)


def test_simscore_thresholds_is_the_default_and_an_empty_option_turns_it_off(
    images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIMSCORE_THRESHOLDS", "ssim>=0.9999")
    ref, cand = str(images / "golden.png"), str(images / "renders" / "blur.png")
    code, body = scores_of(capsys, ["compare", ref, cand, "--json"])
    assert code == 1 and body["verdict"]["failed"] == ["ssim>=0.9999"]
    code, body = scores_of(capsys, ["compare", ref, cand, "--json", "--threshold", ""])
    assert code == 0 and body["verdict"] is None
    code, body = scores_of(capsys, ["compare", ref, cand, "--json", "--threshold", "ssim>=0"])
    assert code == 0 and body["verdict"]["passed"]


def test_compare_is_traced_and_continues_the_callers_traceparent(
    images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devtools.otlp import OtlpReceiver, Traces, otel_env

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
