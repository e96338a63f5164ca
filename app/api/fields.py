"""The form fields the scoring endpoints share, declared once (routes compose their forms)."""

from __future__ import annotations

from app.api.forms import FileField, Form, TextField
from app.pipeline import CompareOptions
from app.vocabulary import MAP_KINDS, SCORE_NAMES, SIZE_POLICIES, SizePolicy, parse_metrics

_FORMATS = "PNG, JPEG, WebP, GIF, BMP (not RLE) or TIFF"

REFERENCE = FileField("reference", f"The reference (golden) image: {_FORMATS}.")
CANDIDATE = FileField("candidate", "The candidate image, compared to the reference.")
CANDIDATES = FileField(
    "candidates",
    "The candidate images, one file per repeated 'candidates' field (at most "
    "SIMSCORE_MAX_BATCH_CANDIDATES, default 64); each is compared to the reference.",
    max_count=64,
    count_setting="SIMSCORE_MAX_BATCH_CANDIDATES",
)
MASK = FileField(
    "mask",
    "Optional region of interest: an image (PNG, any mode) whose alpha, or else luminance, is "
    "nonzero where to compare; resized to the compared size (nearest neighbour). Outside it "
    "the candidate counts as equal to the reference (README: Scores).",
    required=False,
)
METRICS = TextField(
    "metrics",
    f"Comma-separated subset of {', '.join(SCORE_NAMES)} (default: all).",
    {"type": "string", "examples": ["vgg,ssim"]},
)
SIZE_POLICY = TextField(
    "size_policy",
    "'resize' (default): a candidate of another size is resized to the reference's. "
    "'strict': refuse pairs of different sizes.",
    {"type": "string", "enum": list(SIZE_POLICIES), "examples": ["resize"]},
)
MAP_KIND_TEXT = (
    "'ssim': the local SSIM (fixed colour range [0, 1]; 1 = identical, yellow). 'abs': the mean "
    "absolute pixel difference over the channels (fixed range [0, 1]; 0 = identical, dark "
    "purple). Viridis colour map; see docs/dashboard.md."
)
MAP_KIND = TextField(
    "map_kind",
    "With include_map: the kind of map. " + MAP_KIND_TEXT,
    {"type": "string", "enum": list(MAP_KINDS), "default": "ssim"},
)
KIND = TextField(
    "kind", MAP_KIND_TEXT, {"type": "string", "enum": list(MAP_KINDS), "default": "ssim"}
)
INCLUDE_MAP = TextField(
    "include_map",
    "Also return the map_kind difference map as base64 PNG in map_png_base64.",
    {"type": "boolean", "default": False},
)


def compare_options(form: Form) -> CompareOptions:
    """The metrics, size policy and mask a form asks for (422 for unknown values)."""
    policy: SizePolicy | None = form.choice("size_policy", SIZE_POLICIES)  # type: ignore[assignment]
    return CompareOptions(
        metrics=parse_metrics(form.text("metrics")),
        size_policy=policy,
        mask=form.optional_file("mask"),
    )
