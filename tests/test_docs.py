"""The README keeps up with the code: every setting and metric is documented."""

from __future__ import annotations

from pathlib import Path

from app.config import Settings
from app.observability import EXPORTED_METRICS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        assert f"SIMSCORE_{name.upper()}" in README, name


def test_every_metric_is_in_the_readme() -> None:
    for name in EXPORTED_METRICS:
        assert name in README, name


def test_the_quickstart_commands_are_the_makefile_targets() -> None:
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make run" in README and "\nrun:" in makefile
    assert "make test" in README and "\ntest:" in makefile
    assert "make test" in ci


def test_the_verdicts_table_gives_every_score_its_direction() -> None:
    """Every score of the vocabulary, with the way it goes for more alike images."""
    from app.vocabulary import LOWER_IS_MORE_ALIKE, SCORE_NAMES

    section = README.split("## Verdicts (`thresholds`)")[1].split("\n## ")[0]
    for name in SCORE_NAMES:
        direction = "lower" if name in LOWER_IS_MORE_ALIKE else "higher"
        assert f"| `{name}` | {direction} |" in section, name
