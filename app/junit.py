"""JUnit XML reports, the format CI report viewers read (GitHub Actions' test-report actions,
GitLab's ``artifacts:reports:junit``, Jenkins' ``junit`` step): one ``testsuite`` in a
``testsuites`` root, one ``testcase`` per checked item, a ``failure`` for a check that did not
hold and an ``error`` for an item that could not be checked, with counts that agree.

Standard library only (``xml.etree``): ``simscore compare --junit`` writes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """Why a test case did not pass: a one-line ``message``, its ``kind`` (the ``type``
    attribute) and the longer ``text`` in the element's body."""

    message: str
    kind: str
    text: str = ""


@dataclass(frozen=True)
class Case:
    """One ``testcase``: passed unless it has a ``failure`` or an ``error``."""

    name: str
    classname: str
    time_s: float = 0.0
    failure: Problem | None = None
    error: Problem | None = None
    output: str = ""  # ``system-out``: what was measured

    def __post_init__(self) -> None:
        if self.failure is not None and self.error is not None:
            raise ValueError(f"test case {self.name!r}: a failure or an error, not both")


@dataclass(frozen=True)
class Suite:
    """One ``testsuite``: its cases in order, and ``properties`` (what the run was given)."""

    name: str
    cases: Sequence[Case]
    time_s: float = 0.0
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(case.failure is not None for case in self.cases)

    @property
    def errors(self) -> int:
        return sum(case.error is not None for case in self.cases)


def _counts(element: ET.Element, tests: int, failures: int, errors: int, time_s: float) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("time", f"{time_s:.3f}")


def _case(parent: ET.Element, case: Case) -> None:
    element = ET.SubElement(parent, "testcase", name=case.name, classname=case.classname)
    element.set("time", f"{case.time_s:.3f}")
    for tag, problem in (("failure", case.failure), ("error", case.error)):
        if problem is not None:
            child = ET.SubElement(element, tag, message=problem.message, type=problem.kind)
            child.text = problem.text
    if case.output:
        ET.SubElement(element, "system-out").text = case.output


def junit_xml(suite: Suite) -> bytes:
    """The report as UTF-8 XML with its declaration."""
    root = ET.Element("testsuites", name=suite.name)
    _counts(root, len(suite.cases), suite.failures, suite.errors, suite.time_s)
    element = ET.SubElement(root, "testsuite", name=suite.name)
    _counts(element, len(suite.cases), suite.failures, suite.errors, suite.time_s)
    element.set("skipped", "0")
    if suite.properties:
        properties = ET.SubElement(element, "properties")
        for name, value in suite.properties.items():
            ET.SubElement(properties, "property", name=name, value=value)
    for case in suite.cases:
        _case(element, case)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(path: Path, suite: Suite) -> None:
    """Write the report to ``path`` (its folder must exist)."""
    path.write_bytes(junit_xml(suite))
