"""FLIP's viewing conditions: the ppd the reference computes, and refusals that name the value."""

from __future__ import annotations

import math

import pytest

from app.errors import InvalidRequest, InvalidViewingConditions
from app.scores.flip_viewing import (
    DEFAULT_PPD,
    MAX_PPD,
    MIN_PPD,
    pixels_per_degree,
    resolve_ppd,
)


def test_the_default_is_67_ppd_as_in_the_paper() -> None:
    assert resolve_ppd() == DEFAULT_PPD == pytest.approx(0.7 * 3840 / 0.7 * math.pi / 180)
    assert round(DEFAULT_PPD, 2) == 67.02


def test_each_viewing_condition_left_out_takes_its_default() -> None:
    assert resolve_ppd(distance_m=0.7, monitor_width_m=0.7, monitor_width_px=3840) == DEFAULT_PPD
    assert resolve_ppd(distance_m=1.4) == pytest.approx(2 * DEFAULT_PPD, rel=1e-6)
    assert resolve_ppd(monitor_width_px=1920) == pytest.approx(DEFAULT_PPD / 2, rel=1e-6)
    assert resolve_ppd(monitor_width_m=0.35) == pytest.approx(2 * DEFAULT_PPD, rel=1e-6)


def test_a_given_ppd_is_rounded_to_float32_as_the_reference_stores_it() -> None:
    assert resolve_ppd(ppd=42) == 42.0
    assert resolve_ppd(ppd=0.1 + 60) == pytest.approx(60.1, abs=1e-5)
    assert resolve_ppd(ppd=60.1) != 60.1  # float32, not the double


@pytest.mark.parametrize(
    ("kwargs", "parameter", "words"),
    [
        ({"ppd": 0}, "ppd", "above 0"),
        ({"ppd": -3.0}, "ppd", "above 0"),
        ({"ppd": math.nan}, "ppd", "finite"),
        ({"ppd": math.inf}, "ppd", "finite"),
        ({"ppd": True}, "ppd", "a number"),
        ({"ppd": "67"}, "ppd", "a number"),
        ({"ppd": 0.5}, "ppd", f"{MIN_PPD:g} to {MAX_PPD:g}"),
        ({"ppd": 601}, "ppd", f"{MIN_PPD:g} to {MAX_PPD:g}"),
        ({"distance_m": 0.0}, "distance_m", "above 0"),
        ({"monitor_width_m": -0.7}, "monitor_width_m", "above 0"),
        ({"monitor_width_px": math.nan}, "monitor_width_px", "finite"),
        ({"distance_m": 100.0}, "distance_m", "give 9574.38 ppd"),
        (
            {"distance_m": 10.0, "monitor_width_px": 7680},
            "distance_m, monitor_width_px",
            "1 to 600",
        ),
        ({"ppd": 60, "distance_m": 1.0}, "ppd", "not both"),
    ],
)
def test_bad_viewing_conditions_are_refused_by_name(
    kwargs: dict[str, object], parameter: str, words: str
) -> None:
    with pytest.raises(InvalidViewingConditions) as raised:
        resolve_ppd(**kwargs)  # type: ignore[arg-type]
    assert raised.value.parameter == parameter
    assert parameter.split(",")[0] in str(raised.value)
    assert words in str(raised.value)


def test_the_refusal_is_a_422_input_error_and_a_value_error() -> None:
    """``app.api.errors`` maps InvalidRequest to 422; metric callers may catch ValueError."""
    with pytest.raises(InvalidRequest):
        resolve_ppd(ppd=-1)
    with pytest.raises(ValueError, match="distance_m"):
        pixels_per_degree(distance_m=-1)


def test_the_range_ends_are_accepted() -> None:
    assert resolve_ppd(ppd=MIN_PPD) == MIN_PPD
    assert resolve_ppd(ppd=MAX_PPD) == MAX_PPD
