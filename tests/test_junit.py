"""app/junit.py: the report parses, its counts agree with its cases at both levels, text that
XML must escape survives, and a case is a failure or an error, never both."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app.junit import Case, Problem, Suite, junit_xml, write_junit


def suite() -> Suite:
    return Suite(
        "simscore compare golden.png",
        [
            Case("a.png", "simscore.golden", 0.25, output="ssim=0.99"),
            Case(
                'b <&> "quoted".png',
                "simscore.golden",
                failure=Problem("failed ssim>=0.92 (ssim = 0.5)", "threshold", "ssim=0.5\npsnr=20"),
            ),
            Case("c.png", "simscore.golden", error=Problem("not a PNG", "HTTP 400", "not a PNG")),
            Case("d.png", "simscore.golden", failure=Problem("failed vgg<=0.1", "threshold")),
        ],
        time_s=1.5,
        properties={"thresholds": "ssim>=0.92,vgg<=0.1", "reference": "golden.png"},
    )


def test_the_report_parses_and_its_counts_agree(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    write_junit(path, suite())
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (element,) = root.findall("testsuite")
    for node in (root, element):
        assert (node.get("tests"), node.get("failures"), node.get("errors")) == ("4", "2", "1")
        assert node.get("time") == "1.500"
    assert element.get("skipped") == "0"
    cases = element.findall("testcase")
    assert [c.get("name") for c in cases] == ["a.png", 'b <&> "quoted".png', "c.png", "d.png"]
    assert {c.get("classname") for c in cases} == {"simscore.golden"}
    assert cases[0].get("time") == "0.250"
    assert [len(c.findall("failure")) for c in cases] == [0, 1, 0, 1]
    assert [len(c.findall("error")) for c in cases] == [0, 0, 1, 0]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "failed ssim>=0.92 (ssim = 0.5)"
    assert failure.get("type") == "threshold"
    assert failure.text == "ssim=0.5\npsnr=20"
    assert cases[0].findtext("system-out") == "ssim=0.99"
    properties = {p.get("name"): p.get("value") for p in element.iter("property")}
    assert properties == {"thresholds": "ssim>=0.92,vgg<=0.1", "reference": "golden.png"}


def test_an_empty_run_is_a_valid_report() -> None:
    root = ET.fromstring(junit_xml(Suite("empty", [])))
    assert root.get("tests") == "0"
    assert root.find("testsuite/properties") is None


def test_a_case_is_a_failure_or_an_error_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        Case("x", "y", failure=Problem("a", "b"), error=Problem("c", "d"))
