"""FLIP's viewing conditions: how many pixels one degree of visual angle spans.

    ppd = d * (p / w) * pi / 180

for an observer ``d`` metres from a monitor ``w`` metres wide showing ``p`` pixels across
(Andersson et al. 2020, section 4; ``FLIP::calculatePPD``). The reference tool's defaults,
0.7 m from a 0.7 m wide 3840-pixel monitor, give 67.0206 ppd. FLIP's filter widths scale with
ppd (``app.scores.flip_filters``), so it must be finite and positive; this service also bounds
it to [``MIN_PPD``, ``MAX_PPD``]: below 1 ppd a pixel spans more than a degree and the filters
shrink to 3 taps, above 600 ppd (an 8K monitor seen from 3 m) the filters pass 165 taps and the
cost grows with them. The value is rounded to float32, as the reference tool stores it.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from app.errors import InvalidViewingConditions

DEFAULT_DISTANCE_M = 0.7
DEFAULT_MONITOR_WIDTH_M = 0.7
DEFAULT_MONITOR_WIDTH_PX = 3840.0
MIN_PPD = 1.0
MAX_PPD = 600.0
_PI = np.float32(3.14159265358979)  # FLIP::PI


def _checked(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidViewingConditions(name, f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise InvalidViewingConditions(name, f"{name} must be a finite number above 0, got {value}")
    return number


def pixels_per_degree(
    *,
    distance_m: float = DEFAULT_DISTANCE_M,
    monitor_width_m: float = DEFAULT_MONITOR_WIDTH_M,
    monitor_width_px: float = DEFAULT_MONITOR_WIDTH_PX,
) -> float:
    """``d * (p / w) * pi / 180`` in float32 arithmetic, as ``FLIP::calculatePPD`` computes it.

    Raises ``InvalidViewingConditions`` (a ``ValueError``) naming the first parameter that is not
    a finite number above 0; the result is not range-checked here (``resolve_ppd`` does that).
    """
    distance = np.float32(_checked("distance_m", distance_m))
    width = np.float32(_checked("monitor_width_m", monitor_width_m))
    pixels = np.float32(_checked("monitor_width_px", monitor_width_px))
    return float(distance * (pixels / width) * (_PI / np.float32(180.0)))


DEFAULT_PPD = pixels_per_degree()  # 67.02064514160156


def resolve_ppd(
    *,
    ppd: float | None = None,
    distance_m: float | None = None,
    monitor_width_m: float | None = None,
    monitor_width_px: float | None = None,
) -> float:
    """The ppd FLIP runs at, from ``ppd`` directly or from the viewing conditions (each one left
    out takes its default); nothing given: ``DEFAULT_PPD``.

    Raises ``InvalidViewingConditions`` (an ``InvalidRequest`` and a ``ValueError``; its
    ``parameter`` names the culprit) when a value is not a finite number above 0, when ``ppd``
    comes with any viewing condition (they are alternatives, as in the reference tool), or when
    the ppd falls outside [``MIN_PPD``, ``MAX_PPD``].
    """
    conditions = {
        "distance_m": distance_m,
        "monitor_width_m": monitor_width_m,
        "monitor_width_px": monitor_width_px,
    }
    given = [name for name, value in conditions.items() if value is not None]
    if ppd is not None:
        if given:
            raise InvalidViewingConditions(
                "ppd", f"give ppd or the viewing conditions ({', '.join(given)}), not both"
            )
        value = float(np.float32(_checked("ppd", ppd)))
        return _in_range(value, "ppd", f"ppd is {value:g}")
    value = pixels_per_degree(
        distance_m=DEFAULT_DISTANCE_M if distance_m is None else distance_m,
        monitor_width_m=DEFAULT_MONITOR_WIDTH_M if monitor_width_m is None else monitor_width_m,
        monitor_width_px=DEFAULT_MONITOR_WIDTH_PX if monitor_width_px is None else monitor_width_px,
    )
    culprit = ", ".join(given)
    described = ", ".join(f"{name}={conditions[name]:g}" for name in given) or "the defaults"
    return _in_range(value, culprit, f"{described} give {value:g} ppd")


def _in_range(value: float, parameter: str, described: str) -> float:
    if not MIN_PPD <= value <= MAX_PPD:
        raise InvalidViewingConditions(
            parameter,
            f"{described}; FLIP here needs {MIN_PPD:g} to {MAX_PPD:g} pixels per degree",
        )
    return value
