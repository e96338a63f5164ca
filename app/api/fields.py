"""The form fields the scoring endpoints share, declared once (routes compose their forms)."""

from __future__ import annotations

from app.api.forms import FileField, Form, TextField
from app.errors import InvalidRequest, InvalidViewingConditions
from app.pipeline import CompareOptions
from app.scores.flip_viewing import resolve_ppd
from app.verdicts import Thresholds, directions_text, parse_thresholds
from app.vocabulary import (
    DEFAULT_SCORE_NAMES,
    MAP_KINDS,
    SCORE_NAMES,
    SIZE_POLICIES,
    MapKind,
    SizePolicy,
    parse_scores,
)

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
SCORES = TextField(
    "scores",
    "The scores to compute: comma-separated names (the ScoreName schema: "
    f"{', '.join(SCORE_NAMES)}). Default: {','.join(DEFAULT_SCORE_NAMES)}; the others are "
    "opt-in. GET /scores says which this server can compute; asking for one it cannot is a 422 "
    "naming the setting and `simscore fetch-weights --backbone NAME`.",
    {"type": "string", "examples": ["vgg,ssim", "lpips,dists"]},
)
METRICS = TextField(
    "metrics",
    "The old name of 'scores', still accepted (give one of the two).",
    {"type": "string", "examples": ["vgg,ssim"]},
    deprecated=True,
)
THRESHOLDS = TextField(
    "thresholds",
    "Conditions that give each result a verdict: comma-separated <score><=<number> or "
    f"<score>>=<number> (inclusive; {directions_text()}). A score named here is computed even "
    "if 'scores' leaves it out. Absent: SIMSCORE_THRESHOLDS applies, if set; empty: no verdict. "
    "A bad condition is a 422 naming it, and nothing is scored.",
    {"type": "string", "examples": ["vgg<=0.05,ssim>=0.92,psnr>=30"]},
)
SIZE_POLICY = TextField(
    "size_policy",
    "'resize' (default): a candidate of another size is resized to the reference's. "
    "'strict': refuse pairs of different sizes.",
    {"type": "string", "enum": list(SIZE_POLICIES)},
    component="SizePolicy",
)
MAP_KIND_TEXT = (
    "'ssim': the local SSIM (fixed colour range [0, 1]; 1 = identical, yellow). 'abs': the mean "
    "absolute pixel difference over the channels (fixed range [0, 1]; 0 = identical, dark "
    "purple). 'lpips', 'lpips_vgg': the LPIPS spatial distance map of that score's network, "
    "upsampled to the compared size (fixed range [0, 1], values above 1 drawn as 1; 0 = "
    "identical, dark purple; needs the score to be available, see GET /scores). Viridis colour "
    "map, except 'flip': FLIP's per-pixel error (fixed range [0, 1]; 0 = identical, black) in "
    "the reference tool's magma, at the viewing conditions given; see docs/dashboard.md."
)
_MAP_KIND_SCHEMA = {"type": "string", "enum": list(MAP_KINDS)}
MAP_KIND = TextField(
    "map_kind", "The kind of map (default ssim). " + MAP_KIND_TEXT, _MAP_KIND_SCHEMA, "MapKind"
)
INCLUDED_MAP_KIND = TextField(
    "map_kind",
    "With include_map: the kind of map (default ssim). " + MAP_KIND_TEXT,
    _MAP_KIND_SCHEMA,
    "MapKind",
)
KIND = TextField(
    "kind",
    "The old name of 'map_kind' on /compare/map, still accepted (give one of the two).",
    _MAP_KIND_SCHEMA,
    component="MapKind",
    deprecated=True,
)
_NUMBER = {"type": "number", "exclusiveMinimum": 0}
PPD = TextField(
    "ppd",
    "FLIP's viewing conditions given directly: pixels per degree of visual angle, 1 to 600 "
    "(default 67.02: the reference tool's 0.7 m from a 0.7 m wide 3840-pixel monitor). Give "
    "it or the viewing distance and monitor, not both. Only flip uses it.",
    {"type": "number", "minimum": 1, "maximum": 600, "examples": [67.02]},
)
DISTANCE_M = TextField(
    "distance_m", "FLIP: the observer's distance from the monitor in metres (default 0.7).", _NUMBER
)
MONITOR_WIDTH_M = TextField(
    "monitor_width_m", "FLIP: the monitor's width in metres (default 0.7).", _NUMBER
)
MONITOR_WIDTH_PX = TextField(
    "monitor_width_px", "FLIP: the monitor's width in pixels (default 3840).", _NUMBER
)
VIEWING = (PPD, DISTANCE_M, MONITOR_WIDTH_M, MONITOR_WIDTH_PX)
SCORE_OPTIONS = (MASK, SCORES, METRICS, SIZE_POLICY)
"""What to compare and how, in a scoring form's order after its images (``compare_options``
reads these and ``VIEWING``)."""
INCLUDE_MAP = TextField(
    "include_map",
    "Also return the map_kind difference map as base64 PNG in map_png_base64.",
    {"type": "boolean", "default": False},
)


def compare_options(
    form: Form, thresholds: Thresholds | None = None, map_kind: MapKind | None = None
) -> CompareOptions:
    """The scores, size policy and mask a form asks for (422 for unknown values); the scores
    ``thresholds`` name are computed too. ``map_kind``: the map the answer includes."""
    policy: SizePolicy | None = form.choice("size_policy", SIZE_POLICIES)  # type: ignore[assignment]
    name, text = _one_of(form, SCORES.name, METRICS.name)
    scores = parse_scores(text, field=name)
    if thresholds is not None:
        scores |= {score for score in SCORE_NAMES if score in thresholds.scores}
    mask = form.optional_file("mask")
    ppd = viewing_ppd(form)
    return CompareOptions(scores, policy, mask, map_kind, ppd)


def viewing_ppd(form: Form) -> float:
    """The pixels per degree FLIP runs at: ``ppd``, or the viewing distance and monitor (each
    left out takes the reference tool's default). 422 naming the field for a value that is not
    a number, not finite and above 0, ``ppd`` given with the others, or a ppd outside 1 to
    600."""
    values: dict[str, float] = {}
    for spec in VIEWING:
        text = (form.text(spec.name) or "").strip()
        if not text:
            continue
        try:
            values[spec.name] = float(text)
        except ValueError:
            raise InvalidViewingConditions(
                spec.name, f"{spec.name} must be a number, got {text!r}"
            ) from None
    return resolve_ppd(**values)


def verdict_thresholds(form: Form, default: Thresholds | None) -> Thresholds | None:
    """The conditions a form's results are checked against: its ``thresholds`` field (empty:
    none), else ``default`` (``SIMSCORE_THRESHOLDS``). 422 names a bad condition."""
    text = form.text(THRESHOLDS.name)
    return default if text is None else parse_thresholds(text, field=THRESHOLDS.name)


def map_kind(form: Form) -> MapKind:
    """The map kind a form asks for (``map_kind``, or its old name ``kind``; default ssim)."""
    name, _ = _one_of(form, MAP_KIND.name, KIND.name)
    kind: MapKind = form.choice(name, MAP_KINDS) or "ssim"  # type: ignore[assignment]
    return kind


def _one_of(form: Form, name: str, old_name: str) -> tuple[str, str | None]:
    """The field a form gives of a field and its old name (422 when it gives both)."""
    given = [n for n in (name, old_name) if (form.text(n) or "").strip()]
    if len(given) > 1:
        raise InvalidRequest(
            f"invalid request: give '{name}' or its old name '{old_name}', not both"
        )
    chosen = given[0] if given else name
    return chosen, form.text(chosen)
