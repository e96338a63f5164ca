"""What the load test sends and how it judges every answer; no locust import here.

Importing locust monkey-patches the standard library (gevent), so the payloads and the checks
live in this plain module: the locustfile and the unit tests both import it.

Payloads are real photographs that scikit-image ships, cut to the sizes users send (224 x 224,
512 x 512, pairs of different sizes, a dashboard of candidates against one golden image) and
distorted the way renders and uploads are (JPEG, blur, noise, a colour shift).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from devtools import images
from devtools.images import encode, photo

# app.scores.perceptual.VGG_TAP_WEIGHTS and app.models.vgg.TAP_NAMES, repeated so that the
# locust process does not import torch; tests/test_locustfile.py checks that they agree.
VGG_TAP_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
TAP_NAMES: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
SCORE_NAMES: tuple[str, ...] = ("vgg", "style", "ssim", "mse", "psnr")
PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "stereo_motorcycle",
    "hubble_deep_field",
    "retina",
)
# Photographs used at their own size (width x height), each with a candidate of another size.
NATIVE_PHOTOS: tuple[str, ...] = ("coffee", "chelsea", "rocket")
DISTORTIONS: tuple[str, ...] = ("jpeg", "blur", "noise", "colour")
MIN_SIDE = 32

Upload = tuple[str, bytes, str]  # (file name, bytes, content type), as requests' ``files`` take


class BadResponse(Exception):
    """A response whose status, headers or JSON body is not what the API promises."""


@dataclass(frozen=True)
class Expect:
    """What a successful ``/compare`` body must say about the images."""

    width: int
    height: int
    candidate_resized: bool = False
    identical: bool = False


@dataclass(frozen=True)
class Pair:
    """One ``/compare`` request: its stats name, a stable id and the two uploads."""

    name: str
    key: str
    reference: Upload
    candidate: Upload
    expect: Expect


@dataclass(frozen=True)
class Dashboard:
    """Many candidates against one golden reference."""

    name: str
    key: str
    reference: Upload
    candidates: tuple[Upload, ...]
    expect: Expect


@dataclass(frozen=True)
class Traffic:
    """Every payload the locust users draw from."""

    square_224: tuple[Pair, ...]
    square_512: tuple[Pair, ...]
    mixed_sizes: tuple[Pair, ...]
    identical: tuple[Pair, ...]
    dashboard: Dashboard


# -- payloads ----------------------------------------------------------------------------------


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop to the aspect of ``width x height``, then resize to it (Lanczos)."""
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        cw = round(h * target)
        image = image[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w / target)
        image = image[(h - ch) // 2 : (h - ch) // 2 + ch]
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.LANCZOS
    )
    return np.asarray(resized)


def distort(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """A candidate as a render or an upload changes it, a little differently per seed."""
    strength = {
        "jpeg": 0.8,
        "blur": (1.5 + seed % 3) / 2,
        "noise": (8 + 4 * (seed % 3)) / 12,
        "colour": 0.8 + 0.1 * (seed % 5),
    }[kind]
    return images.distort(image, kind, seed=seed, strength=strength)


def upload(name: str, image: np.ndarray, fmt: str) -> Upload:
    """A multipart file tuple; JPEG at quality 92, as a browser or a camera would send."""
    if fmt == "JPEG":
        return (f"{name}.jpg", encode(image, "JPEG", quality=92), "image/jpeg")
    return (f"{name}.png", encode(image, "PNG"), "image/png")


def scaled(side: int, scale: float) -> int:
    """``side * scale``, at least ``MIN_SIDE`` (tests shrink everything to stay fast)."""
    return max(MIN_SIDE, round(side * scale))


def square_pairs(side: int, label: str) -> tuple[Pair, ...]:
    """One pair per photograph at ``side x side``, each with another distortion and format."""
    pairs = []
    for i, name in enumerate(PHOTOS):
        reference = fit(photo(name), side, side)
        kind = DISTORTIONS[i % len(DISTORTIONS)]
        candidate = distort(reference, kind, seed=i)
        fmt = "JPEG" if i % 2 else "PNG"
        pairs.append(
            Pair(
                name=f"/compare {label}",
                key=f"{label}:{name}:{kind}",
                reference=upload(f"{name}-ref", reference, "PNG"),
                candidate=upload(f"{name}-{kind}", candidate, fmt),
                expect=Expect(width=side, height=side),
            )
        )
    return tuple(pairs)


def build_traffic(scale: float = 1.0, dashboard_candidates: int = 8) -> Traffic:
    """All payloads; ``scale`` shrinks every side (for tests), 1.0 is the real load test."""
    if scale <= 0 or dashboard_candidates < 1:
        raise ValueError("scale must be positive and dashboard_candidates at least 1")
    side_224, side_512 = scaled(224, scale), scaled(512, scale)
    mixed = []
    for i, name in enumerate(NATIVE_PHOTOS):
        image = photo(name)
        h, w = image.shape[:2]
        ref_w, ref_h = scaled(w, scale), scaled(h, scale)
        reference = fit(image, ref_w, ref_h)
        factor = 1.5 if i % 2 == 0 else 0.75  # a larger, or a smaller, upload of the render
        other = distort(image, DISTORTIONS[i], seed=i)
        other = fit(other, round(ref_w * factor), round(ref_h * factor))
        mixed.append(
            Pair(
                name="/compare mixed sizes",
                key=f"mixed:{name}",
                reference=upload(f"{name}-ref", reference, "PNG"),
                candidate=upload(f"{name}-other-size", other, "JPEG"),
                expect=Expect(width=ref_w, height=ref_h, candidate_resized=True),
            )
        )
    square_224 = square_pairs(side_224, "224")
    identical = tuple(
        Pair(
            name="/compare identical",
            key=f"identical:{p.key}",
            reference=p.reference,
            candidate=p.reference,
            expect=Expect(width=side_224, height=side_224, identical=True),
        )
        for p in square_224[:3]
    )
    side_dash = scaled(256, scale)
    golden = fit(photo("astronaut"), side_dash, side_dash)
    candidates = tuple(
        upload(f"tile-{j}", distort(golden, DISTORTIONS[j % len(DISTORTIONS)], seed=j), "JPEG")
        for j in range(dashboard_candidates)
    )
    return Traffic(
        square_224=square_224,
        square_512=square_pairs(side_512, "512"),
        mixed_sizes=tuple(mixed),
        identical=identical,
        dashboard=Dashboard(
            name="/compare dashboard",
            key="dashboard:astronaut",
            reference=upload("golden", golden, "PNG"),
            candidates=candidates,
            expect=Expect(width=side_dash, height=side_dash),
        ),
    )


# -- checks ------------------------------------------------------------------------------------


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise BadResponse(f"{what} is not a JSON object: {value!r}")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadResponse(f"{what} is {value!r}, not a finite number")
    return float(value)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def check_compare(body: object, expect: Expect) -> dict[str, float | None]:
    """Check one ``/compare`` body (or one item of ``/compare/batch``); return its scores.

    Beyond types and ranges it checks the body against itself: ``vgg`` is the weighted sum of
    its per-layer values, ``style`` their plain sum, ``psnr`` is ``10 log10(1 / mse)``; and an
    identical pair scores exactly 0 (vgg, style, mse), 1 (ssim) and null (psnr).
    """
    root = _mapping(body, "the body")
    scores_in = _mapping(root.get("scores"), "scores")
    scores: dict[str, float | None] = {}
    for name in ("vgg", "style", "ssim", "mse"):
        scores[name] = _number(scores_in.get(name), f"scores.{name}")
    psnr_raw = scores_in.get("psnr")
    scores["psnr"] = None if psnr_raw is None else _number(psnr_raw, "scores.psnr")
    vgg, style, ssim, mse = (scores[n] or 0.0 for n in ("vgg", "style", "ssim", "mse"))
    if vgg < 0 or style < 0 or not 0 <= mse <= 1 or not -1 <= ssim <= 1 + 1e-6:
        raise BadResponse(f"scores out of range: {scores}")
    psnr = scores["psnr"]
    if mse > 0 and (psnr is None or not _close(psnr, 10 * math.log10(1 / mse), 1e-4, 1e-4)):
        raise BadResponse(f"psnr {psnr} does not match mse {mse}")
    if mse == 0 and psnr is not None:
        raise BadResponse(f"psnr must be null for identical pixels, got {psnr}")

    layers = _mapping(root.get("layers"), "layers")
    per_tap = {}
    for which in ("vgg", "style"):
        taps = _mapping(layers.get(which), f"layers.{which}")
        if tuple(taps) != TAP_NAMES:
            raise BadResponse(f"layers.{which} has {tuple(taps)}, not {TAP_NAMES}")
        per_tap[which] = [_number(taps[t], f"layers.{which}.{t}") for t in TAP_NAMES]
    weighted = sum(w * v for w, v in zip(VGG_TAP_WEIGHTS, per_tap["vgg"], strict=True))
    if not _close(vgg, weighted, 1e-4, 1e-9):
        raise BadResponse(f"vgg {vgg} is not the weighted sum of its layers ({weighted})")
    if not _close(style, sum(per_tap["style"]), 1e-4, 1e-12):
        raise BadResponse(f"style {style} is not the sum of its layers")

    image = _mapping(root.get("image"), "image")
    got = (image.get("width"), image.get("height"))
    if got != (expect.width, expect.height):
        raise BadResponse(f"image is {got}, expected {(expect.width, expect.height)}")
    if image.get("candidate_resized") is not expect.candidate_resized:
        raise BadResponse(f"candidate_resized is {image.get('candidate_resized')!r}")
    model = _mapping(root.get("model"), "model")
    if model.get("name") != "vgg19" or not isinstance(model.get("weights"), str):
        raise BadResponse(f"model is {model!r}")
    timing = _mapping(root.get("timing_ms"), "timing_ms")
    if _number(timing.get("batch_size"), "timing_ms.batch_size") < 1:
        raise BadResponse("timing_ms.batch_size < 1")
    if not isinstance(root.get("reference_cached"), bool):
        raise BadResponse("reference_cached is not a boolean")

    if expect.identical and (mse != 0 or vgg > 1e-5 or style > 1e-7 or ssim < 1 - 1e-5):
        raise BadResponse(f"an identical pair scored {scores}")
    if not expect.identical and mse == 0:
        raise BadResponse("a distorted pair scored mse 0")
    return scores


def check_batch(body: object, expect: Expect, count: int) -> list[dict[str, float | None]]:
    """Check a ``/compare/batch`` body: ``count`` results, every one a good comparison."""
    root = _mapping(body, "the body")
    results = root.get("results")
    if not isinstance(results, list) or len(results) != count:
        raise BadResponse(f"results is not a list of {count}")
    out = []
    for i, item in enumerate(results):
        if isinstance(item, Mapping) and "error" in item:
            raise BadResponse(f"candidate {i} failed: {item['error']!r}")
        try:
            out.append(check_compare(item, expect))
        except BadResponse as exc:
            raise BadResponse(f"candidate {i}: {exc}") from exc
    return out


def check_health(body: object, status: str) -> None:
    """``/healthz`` says ``ok``, ``/readyz`` says ``ready``."""
    if _mapping(body, "the body").get("status") != status:
        raise BadResponse(f"health body is {body!r}, expected status {status!r}")


def check_backpressure(headers: Mapping[str, str], body: object) -> None:
    """A 429 is expected under overload, but only as the API promises it: JSON with a
    ``detail`` and a ``Retry-After`` header of whole seconds."""
    detail = _mapping(body, "the 429 body").get("detail")
    if not isinstance(detail, str) or not detail:
        raise BadResponse(f"429 body has no detail: {body!r}")
    retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if retry is None or not retry.isdigit():
        raise BadResponse(f"429 without a Retry-After of seconds (got {retry!r})")


@dataclass
class ScoreBook:
    """The first scores seen per payload; later answers for it must agree.

    A pair's scores may not depend on what else shared its batch, on the batch size or on
    whether its reference came from the cache; float noise between batch shapes is far below
    ``rtol``. ``mse`` only reads pixels and must agree exactly.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    seen: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def check(self, key: str, scores: Mapping[str, float | None]) -> None:
        first = self.seen.setdefault(key, dict(scores))
        for name in SCORE_NAMES:
            a, b = first.get(name), scores.get(name)
            if a is None or b is None:
                if a is not b:
                    raise BadResponse(f"{key}: {name} was {a}, now {b}")
                continue
            rtol = 0.0 if name == "mse" else self.rtol
            atol = 0.0 if name == "mse" else self.atol
            if not _close(a, b, rtol, atol):
                raise BadResponse(f"{key}: {name} was {a}, now {b} (batch cross-talk?)")


def pairs_per_task(weights: Mapping[str, int], pairs: Mapping[str, int]) -> float:
    """Mean pairs scored per task run, from the task weights (for pacing to a pair rate)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("task weights must add up to more than 0")
    return sum(weights[name] * pairs.get(name, 0) for name in weights) / total


def batch_field(openapi: object) -> str | None:
    """The multipart field of ``POST /compare/batch`` that takes the candidates, if any.

    Read from the service's OpenAPI document, so the dashboard task follows the API as it is.
    """
    try:
        paths = _mapping(_mapping(openapi, "openapi").get("paths"), "paths")
        post = _mapping(_mapping(paths.get("/compare/batch"), "path").get("post"), "post")
        content = _mapping(_mapping(post.get("requestBody"), "body").get("content"), "content")
        schema = _mapping(_mapping(content.get("multipart/form-data"), "form").get("schema"), "s")
        ref = schema.get("$ref")
        if isinstance(ref, str):
            components = _mapping(_mapping(openapi, "openapi").get("components"), "components")
            schemas = _mapping(components.get("schemas"), "schemas")
            schema = _mapping(schemas.get(ref.rsplit("/", 1)[-1]), "schema")
        properties = _mapping(schema.get("properties"), "properties")
    except BadResponse:
        return None
    for name, spec in properties.items():
        if isinstance(spec, Mapping) and spec.get("type") == "array":
            return name
    return None


def select(items: Sequence[Pair], index: int) -> Pair:
    """Round-robin choice (deterministic, so every payload is exercised)."""
    return items[index % len(items)]
