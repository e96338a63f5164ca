"""app/verdicts.py: conditions parsed from the vocabulary's names, their canonical form, every
kind of bad condition refused with its text, inclusive bounds, infinity and missing values."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from app.errors import InvalidRequest
from app.verdicts import Condition, Thresholds, direction, directions_text, parse_thresholds
from app.vocabulary import LOWER_IS_MORE_ALIKE, SCORE_NAMES
from devtools.servers import ROOT


def parsed(text: str) -> Thresholds:
    thresholds = parse_thresholds(text)
    assert thresholds is not None
    return thresholds


def test_conditions_in_order_with_their_canonical_form() -> None:
    thresholds = parsed(" VGG <= 0.05 ,ssim>=0.920,  psnr >= 30,mse<=1e-3,style<=+.5")
    assert [(c.score, c.op, c.bound) for c in thresholds.conditions] == [
        ("vgg", "<=", 0.05),
        ("ssim", ">=", 0.92),
        ("psnr", ">=", 30.0),
        ("mse", "<=", 0.001),
        ("style", "<=", 0.5),
    ]
    # lower-case name, operator, the bound as written, no spaces
    assert thresholds.text == "vgg<=0.05,ssim>=0.920,psnr>=30,mse<=1e-3,style<=+.5"
    assert thresholds.scores == {"vgg", "ssim", "psnr", "mse", "style"}


@pytest.mark.parametrize("text", [None, "", "   ", "\t"])
def test_no_text_is_no_thresholds(text: str | None) -> None:
    assert parse_thresholds(text) is None


@pytest.mark.parametrize(
    ("text", "named", "why"),
    [
        ("blur<=0.1", "'blur<=0.1'", "unknown score 'blur'"),
        ("vgg<=0.05,NIQE>=0.1", "'NIQE>=0.1'", "unknown score 'NIQE'"),
        ("<=0.1", "'<=0.1'", "no score name"),
        ("vgg<0.05", "'vgg<0.05'", "the operator must be <= or >=, not '<'"),
        ("ssim>0.9", "'ssim>0.9'", "not '>'"),
        ("ssim=0.9", "'ssim=0.9'", "not '='"),
        ("ssim==0.9", "'ssim==0.9'", "not '=='"),
        ("ssim=>0.9", "'ssim=>0.9'", "not '=>'"),
        ("ssim\u22650.9", "'ssim\u22650.9'", "not '\u2265'"),
        ("ssim 0.9", "'ssim 0.9'", "and none is given"),
        ("psnr>=inf", "'psnr>=inf'", "finite number, not 'inf'"),
        ("psnr>=-inf", "'psnr>=-inf'", "finite number, not '-inf'"),
        ("ssim>=nan", "'ssim>=nan'", "finite number, not 'nan'"),
        ("psnr>=1e999", "'psnr>=1e999'", "finite number, not '1e999'"),
        ("ssim>=", "'ssim>='", "finite number, not ''"),
        ("ssim>=0.9x", "'ssim>=0.9x'", "not '0.9x'"),
        ("ssim>=1_0", "'ssim>=1_0'", "not '1_0'"),  # float() would take it
        ("vgg<=0.05 ssim>=0.9", "'vgg<=0.05 ssim>=0.9'", "not '0.05 ssim>=0.9'"),
        ("vgg<=0.05,,ssim>=0.9", "condition 2 of 'vgg<=0.05,,ssim>=0.9'", "is empty"),
        ("vgg<=0.05,", "condition 2 of 'vgg<=0.05,'", "is empty"),
        (",vgg<=0.05", "condition 1 of ',vgg<=0.05'", "is empty"),
        ("vgg<=0.05, ,ssim>=1", "condition 2", "is empty"),
        ("ssim>=0.9,vgg<=1,SSIM >= 0.8", "'SSIM >= 0.8'", "repeats a condition on ssim >="),
    ],
)
def test_every_kind_of_bad_condition_is_named(text: str, named: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_thresholds(text)
    message = str(refused.value)
    assert message.startswith("thresholds: "), message
    assert named in message and why in message, message
    assert "\n" not in message


def test_a_range_on_one_score_is_not_a_duplicate() -> None:
    thresholds = parsed("ssim>=0.9,ssim<=0.99")
    assert thresholds.verdict({"ssim": 0.95}).passed
    assert thresholds.verdict({"ssim": 1.0}).failed_texts == ["ssim<=0.99"]


def test_the_field_name_leads_the_message() -> None:
    with pytest.raises(InvalidRequest, match=r"^--threshold: 'vgg<0\.1'"):
        parse_thresholds("vgg<0.1", field="--threshold")
    with pytest.raises(InvalidRequest, match=r"^'vgg<0\.1'"):
        parse_thresholds("vgg<0.1", field="")


def test_names_come_from_the_vocabulary() -> None:
    """A score added to the vocabulary can be named with no change here."""
    for name in SCORE_NAMES:
        assert parsed(f"{name}<=1").scores == {name}
    names = (*SCORE_NAMES, "niqe", "brisque")
    later = parse_thresholds("niqe<=0.1,brisque>=0.95", names=names)
    assert later is not None and later.text == "niqe<=0.1,brisque>=0.95"
    with pytest.raises(InvalidRequest, match="unknown score 'niqe'"):
        parse_thresholds("niqe<=0.1")


@pytest.mark.parametrize("value", [0.3, 1e-12, 27.49888414516252, 0.0, -0.5, 5e-324])
def test_bounds_are_inclusive(value: float) -> None:
    exact = repr(value)
    verdict = parsed(f"vgg<={exact},ssim>={exact}").verdict({"vgg": value, "ssim": value})
    assert verdict.passed, exact
    above, below = math.nextafter(value, math.inf), math.nextafter(value, -math.inf)
    assert parsed(f"vgg<={exact}").verdict({"vgg": above}).failed_texts == [f"vgg<={exact}"]
    assert parsed(f"ssim>={exact}").verdict({"ssim": below}).failed_texts == [f"ssim>={exact}"]


def test_an_infinite_psnr_is_infinitely_alike() -> None:
    """Identical images: psnr is infinite (null on the wire); it meets every >= bound."""
    thresholds = parsed("psnr>=30,mse<=0")
    assert thresholds.verdict({"psnr": math.inf, "mse": 0.0}).passed
    assert parsed("psnr<=30").verdict({"psnr": math.inf}).failed_texts == ["psnr<=30"]
    assert Condition("psnr", ">=", 1e308, "psnr>=1e308").holds(math.inf)


@pytest.mark.parametrize("value", [None, math.nan])
def test_a_score_with_no_value_fails_its_condition(value: float | None) -> None:
    thresholds = parsed("vgg<=1,ssim>=0")
    verdict = thresholds.verdict({"vgg": value, "ssim": 0.5})
    assert verdict.failed_texts == ["vgg<=1"]
    assert not parsed("vgg>=0").verdict({"vgg": value}).passed


def test_the_verdict_lists_exactly_what_failed_in_the_order_given() -> None:
    thresholds = parsed("ssim>=0.92,vgg<=0.05,psnr>=30,mse<=0.01")
    values = {"ssim": 0.9, "vgg": 0.04, "psnr": 25.0, "mse": 0.001}
    verdict = thresholds.verdict(values)
    assert not verdict.passed
    assert verdict.failed_texts == ["ssim>=0.92", "psnr>=30"]
    assert verdict.message() == "failed ssim>=0.92 (ssim = 0.9), psnr>=30 (psnr = 25)"
    assert thresholds.verdict({**values, "ssim": 0.95, "psnr": 30.0}).message() == "passed"


def test_directions_come_from_the_vocabulary() -> None:
    for name in SCORE_NAMES:
        assert direction(name) == ("lower" if name in LOWER_IS_MORE_ALIKE else "higher")
    lower, higher = (
        directions_text().removeprefix("lower is more alike for ").split("; higher for ")
    )
    assert lower.split(", ") == [n for n in SCORE_NAMES if n in LOWER_IS_MORE_ALIKE]
    assert higher.split(", ") == [n for n in SCORE_NAMES if n not in LOWER_IS_MORE_ALIKE]


def test_the_module_imports_neither_torch_nor_numpy() -> None:
    """``app.config`` checks SIMSCORE_THRESHOLDS with it before torch may start a thread."""
    probe = (
        "import sys, app.verdicts, app.junit, app.cli_output; "
        "print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False"]
