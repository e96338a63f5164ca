"""Thresholds and verdicts: ``vgg<=0.05,ssim>=0.92,psnr>=30`` parsed once, checked per pair.

A condition is ``<score><op><bound>``: a score of the vocabulary (``SCORE_NAMES``, so a score
added there can be named here with no change), ``<=`` or ``>=``, and a finite decimal number.
Both operators are inclusive: a score equal to its bound passes. Conditions are comma-separated;
spaces around the parts are ignored and names are case-insensitive.

* The **canonical form** of a condition, which ``failed`` lists, is the score's name in lower
  case, the operator and the bound exactly as written, with no spaces: `` SSIM >= 0.920 ``
  becomes ``ssim>=0.920``.
* **Infinity.** A score may be infinite: psnr is for identical images (the API writes it as
  ``null``, JSON having no infinity). It is compared as the number it is: identical images are
  infinitely alike, so ``psnr>=30`` passes and ``psnr<=30`` fails.
* A score with no value to compare (not computed, or NaN) fails its condition: a condition that
  cannot be checked does not hold. Conditions make their scores computed, so a request never
  meets the first case.
* Refused, each with a message naming the condition as written: an unknown score, an operator
  other than ``<=``/``>=``, a bound that is not a finite number (``inf``, ``nan``, ``1e999``), an
  empty condition (``a,,b``, a trailing comma) and a duplicate (the same score and operator
  twice; ``ssim>=0.9,ssim<=0.99`` is a range, and fine).

Pure Python on the vocabulary (no torch, no numpy): ``app.config`` checks
``SIMSCORE_THRESHOLDS`` with it at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.errors import InvalidRequest
from app.vocabulary import LOWER_IS_MORE_ALIKE, SCORE_NAMES

Operator = Literal["<=", ">="]
OPERATORS: tuple[Operator, ...] = ("<=", ">=")

# name, operator (any run of symbols, checked after), bound: each part's spaces trimmed
_CONDITION = re.compile(r"\s*(?P<name>[A-Za-z_]\w*)?\s*(?P<op>[^\w\s.+-]*)\s*(?P<bound>.*?)\s*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Condition:
    """One condition on one score: ``score op bound``, inclusive."""

    score: str
    op: Operator
    bound: float
    text: str  # the canonical form: name, operator, bound as written, no spaces

    def holds(self, value: float | None) -> bool:
        """Whether ``value`` meets the condition (infinity compares as itself; None and NaN
        do not meet any condition)."""
        if value is None or math.isnan(value):
            return False
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def describe(self, value: float | None) -> str:
        """``ssim>=0.92 (ssim = 0.873123)``: the condition and the score it was checked on."""
        shown = "not computed" if value is None else f"{value:.6g}"
        return f"{self.text} ({self.score} = {shown})"


@dataclass(frozen=True)
class Verdict:
    """What a pair's scores did against a set of conditions."""

    failed: tuple[Condition, ...]
    values: Mapping[str, float | None]  # the scores the conditions were checked on

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def failed_texts(self) -> list[str]:
        """The failed conditions in canonical form, in the order they were given."""
        return [condition.text for condition in self.failed]

    def described(self) -> str:
        """Each failed condition with the score it was checked on, comma-separated."""
        return ", ".join(c.describe(self.values.get(c.score)) for c in self.failed)

    def message(self) -> str:
        """One line: ``passed``, or ``failed`` and each failed condition with its score."""
        return "passed" if self.passed else f"failed {self.described()}"


@dataclass(frozen=True)
class Thresholds:
    """A non-empty set of conditions, in the order given."""

    conditions: tuple[Condition, ...]

    @property
    def scores(self) -> frozenset[str]:
        """The scores the conditions name: a request computes them whatever else it asks."""
        return frozenset(condition.score for condition in self.conditions)

    @property
    def text(self) -> str:
        """The canonical form of the whole set: ``vgg<=0.05,ssim>=0.92``."""
        return ",".join(condition.text for condition in self.conditions)

    def verdict(self, values: Mapping[str, float | None]) -> Verdict:
        """Check every condition against ``values`` (score name -> value)."""
        failed = tuple(c for c in self.conditions if not c.holds(values.get(c.score)))
        return Verdict(failed, {c.score: values.get(c.score) for c in self.conditions})


def parse_thresholds(
    text: str | None,
    *,
    field: str = "thresholds",
    names: Sequence[str] = SCORE_NAMES,
) -> Thresholds | None:
    """``"vgg<=0.05, ssim>=0.92"`` -> ``Thresholds``; ``None``, empty or blank text -> ``None``
    (no verdict). ``InvalidRequest`` names the first bad condition as written, after ``field``
    (where it came from; empty: nothing). ``names``: the scores that may be named (by default
    the vocabulary's)."""
    if text is None or not text.strip():
        return None
    parts = text.split(",")
    conditions: list[Condition] = []
    for position, part in enumerate(parts, start=1):
        condition = _condition(part, position, text, field, names)
        twin = next(
            (c for c in conditions if (c.score, c.op) == (condition.score, condition.op)), None
        )
        if twin is not None:
            raise InvalidRequest(
                f"{_at(field)}{part.strip()!r} repeats a condition on {condition.score} {twin.op} "
                f"({twin.text!r}); give each score at most one <= and one >="
            )
        conditions.append(condition)
    return Thresholds(tuple(conditions))


def _condition(part: str, position: int, text: str, field: str, names: Sequence[str]) -> Condition:
    """The ``position``-th condition of ``text``, or the ``InvalidRequest`` that names what is
    wrong with it."""
    written = part.strip()
    if not written:
        raise InvalidRequest(
            f"{_at(field)}condition {position} of {text.strip()!r} is empty (two commas in a row, "
            "or one at an end?)"
        )
    match = _CONDITION.fullmatch(part)
    name, op, bound = match.group("name", "op", "bound") if match else (None, None, None)
    if not name or name.lower() not in names:
        shown = f"unknown score {name!r}" if name else "no score name before the operator"
        raise InvalidRequest(f"{_at(field)}{written!r}: {shown}; the scores are {', '.join(names)}")
    if op not in OPERATORS:
        found = f"not {op!r}" if op else "and none is given"
        raise InvalidRequest(f"{_at(field)}{written!r}: the operator must be <= or >=, {found}")
    if not bound or not _NUMBER.fullmatch(bound) or not math.isfinite(float(bound)):
        raise InvalidRequest(
            f"{_at(field)}{written!r}: the bound must be a finite number, not {bound!r}"
        )
    score = name.lower()
    return Condition(score, op, float(bound), f"{score}{op}{bound}")


def _at(field: str) -> str:
    return f"{field}: " if field else ""


def direction(score: str) -> str:
    """``lower`` or ``higher``: which way the score goes for more alike images."""
    return "lower" if score in LOWER_IS_MORE_ALIKE else "higher"


def directions_text(names: Sequence[str] = SCORE_NAMES) -> str:
    """``lower is more alike for vgg, style, mse; higher for ssim, psnr`` (help and docs)."""
    lower = [n for n in names if direction(n) == "lower"]
    higher = [n for n in names if direction(n) == "higher"]
    return f"lower is more alike for {', '.join(lower)}; higher for {', '.join(higher)}"
