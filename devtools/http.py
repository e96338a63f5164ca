"""Multipart bodies and Prometheus readings for HTTP tests."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

Files = list[tuple[str, tuple[str, bytes, str]]]


def pair_files(reference: bytes, candidate: bytes, mask: bytes | None = None) -> Files:
    """The file fields of ``POST /compare`` (and ``/compare/map``)."""
    files = [
        ("reference", ("reference.png", reference, "application/octet-stream")),
        ("candidate", ("candidate.png", candidate, "application/octet-stream")),
    ]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "application/octet-stream")))
    return files


def batch_files(reference: bytes, candidates: Sequence[bytes], mask: bytes | None = None) -> Files:
    """The file fields of ``POST /compare/batch``."""
    files = [("reference", ("reference.png", reference, "application/octet-stream"))]
    files += [
        ("candidates", (f"candidate-{i}.png", data, "application/octet-stream"))
        for i, data in enumerate(candidates)
    ]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "application/octet-stream")))
    return files


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def sample(app: object, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample of the app's own Prometheus registry (0 when absent)."""
    if not isinstance(app, FastAPI):
        raise TypeError("an app built by create_app")
    value = app.state.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
