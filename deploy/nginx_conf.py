"""Read deploy/nginx/nginx.conf, and render it for a local nginx (``deploy.proxy_check``).

The reader understands what that file uses: directives, blocks, ``#`` comments and quoted
strings. ``render_local`` changes only addresses and paths (the upstream, the listen address,
the pid file, temporary paths and the access log), so every timeout and limit that a local run
measures is the one that ships.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"

_TOKEN = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[{};]|[^\s{};'"]+""")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TIME_UNITS = {"ms": 0.001, "": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Directive:
    """``name arg ... ;`` or ``name arg ... { children }``."""

    name: str
    args: list[str]
    children: list[Directive] = field(default_factory=list)

    def find(self, name: str) -> list[Directive]:
        """Direct children called ``name``."""
        return [child for child in self.children if child.name == name]

    def one(self, name: str) -> Directive:
        """The single direct child called ``name``."""
        found = self.find(name)
        if len(found) != 1:
            raise LookupError(f"expected one {name!r} in {self.name!r}, found {len(found)}")
        return found[0]

    def value(self, name: str) -> str:
        """The single argument of the single direct child ``name``."""
        (arg,) = self.one(name).args
        return arg

    def walk(self) -> Iterator[Directive]:
        for child in self.children:
            yield child
            yield from child.walk()


def _tokens(text: str) -> Iterator[str]:
    for line in text.splitlines():
        for token in _TOKEN.findall(line):
            if token.startswith("#"):
                break
            yield token


def parse(text: str) -> Directive:
    """The whole configuration as a tree under a root ``main`` block."""
    root = Directive("main", [])
    stack = [root]
    words: list[str] = []
    for token in _tokens(text):
        if token == ";":  # noqa: S105
            if not words:
                raise ValueError("empty directive")
            stack[-1].children.append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":  # noqa: S105
            block = Directive(words[0], words[1:])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":  # noqa: S105
            if words or len(stack) == 1:
                raise ValueError("unbalanced '}' or a directive without ';'")
            stack.pop()
        else:
            words.append(token.strip("'\"") if token[0] in "'\"" else token)
    if words or len(stack) != 1:
        raise ValueError("unterminated directive or block")
    return root


def load(path: Path = NGINX_CONF) -> Directive:
    return parse(path.read_text())


def seconds(value: str) -> float:
    """An nginx time (``10s``, ``500ms``, ``1m``, ``40``) in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|)", value)
    if match is None:
        raise ValueError(f"not an nginx time: {value!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def size_bytes(value: str) -> int:
    """An nginx size (``128000000``, ``1m``, ``16k``) in bytes."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if match is None:
        raise ValueError(f"not an nginx size: {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def render_local(text: str, *, upstream: str, listen: str, workdir: Path) -> str:
    """The shipped configuration with the upstream, the listen address, the pid file, temporary
    paths and the access log moved to ``upstream``, ``listen`` and ``workdir``."""
    replacements = {
        "server simscore:8000;": f"server {upstream};",
        "listen 8080;": f"listen {listen};",
        "/tmp/": f"{workdir}/",  # noqa: S108 (the path in the file, replaced)
        "access_log /dev/stdout ": f"access_log {workdir}/access.log ",
        "error_log stderr ": f"error_log {workdir}/error.log ",
    }
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"{old!r} not found in the nginx configuration")
        text = text.replace(old, new)
    return text
