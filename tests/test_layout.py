"""The sizes the layout keeps (README, Architecture): no module of app/ over 300 lines and no
function over 60, so each module stays one idea a newcomer reads in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> list[Path]:
    found = sorted(APP.rglob("*.py"))
    assert len(found) > 50, "app/ was not found where the test expects it"
    return found


def test_no_module_of_app_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(APP)): count
        for path in modules()
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules: {long}"


def test_no_function_of_app_is_over_60_lines() -> None:
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(APP)}:{node.lineno} {node.name}"] = lines
    assert not long, f"split these functions: {long}"
