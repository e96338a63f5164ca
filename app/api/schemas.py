"""Response models of the public API (they are the OpenAPI schema)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.error_schemas import BatchItemError
from app.api.provenance import ModelOut, model_out
from app.api.verdicts import BatchSummary, Verdict, verdict_out
from app.pipeline import Comparison
from app.scoring import ModelInfo
from app.verdicts import Thresholds, directions_text
from app.vocabulary import SCORE_NAMES, TAP_NAMES


def _absent_if_null(description: str) -> Any:
    """A field that defaults to null and, while null, is left out of the answer (not written
    as null)."""
    return Field(None, description=description, exclude_if=lambda value: value is None)


class Scores(BaseModel):
    """Every score (GET /scores lists them). A request that names no scores gets the first five;
    of those, one not asked for is null. The opt-in scores (lpips, lpips_vgg, dists, flip,
    ms_ssim) are present only when asked for, so that answers to requests that name none are as
    they always were."""

    vgg: float | None = Field(
        None,
        description="VGG19 feature distance: sum over relu1_1..relu5_1 of w_i * mean|phi_i(x) - "
        "phi_i(y)|, w = 1/32, 1/16, 1/8, 1/4, 1. 0 for identical images; lower is more alike.",
    )
    style: float | None = Field(
        None,
        description="Gram-matrix style distance: sum over the taps of mean|G(x) - G(y)|, "
        "G = F F^T / (C H W). 0 for identical images.",
    )
    ssim: float | None = Field(
        None, description="SSIM (11x11 Gaussian, sigma 1.5, valid region), 1 for identical images."
    )
    mse: float | None = Field(None, description="Mean squared error of RGB values in [0, 1].")
    psnr: float | None = Field(
        None,
        description="10 log10(1 / mse) in dB; null when the images are identical (infinite PSNR) "
        "or when not asked for.",
    )
    lpips: float | None = _absent_if_null(
        "LPIPS v0.1 with AlexNet (Zhang et al., CVPR 2018), as lpips.LPIPS(net='alex', "
        "version='0.1') with normalize=True. 0 for identical images; lower is more alike. "
        "Opt-in (scores=lpips): absent from the answer unless asked for."
    )
    lpips_vgg: float | None = _absent_if_null(
        "LPIPS v0.1 with VGG16, as lpips.LPIPS(net='vgg', version='0.1'). 0 for "
        "identical images; lower is more alike. Opt-in: absent unless asked for."
    )
    dists: float | None = _absent_if_null(
        "DISTS (Ding et al., TPAMI 2020), as DISTS_pytorch.DISTS(). 0 for identical "
        "images; lower is more alike. Opt-in: absent unless asked for."
    )
    flip: float | None = _absent_if_null(
        "LDR-FLIP (Andersson et al., HPG 2020), the mean of the per-pixel error as "
        "flip-evaluator 1.7 computes it, at the request's viewing conditions (default 67.02 "
        "pixels per degree). In [0, 1]; 0 for identical images; lower is more alike. Opt-in: "
        "absent unless asked for."
    )
    ms_ssim: float | None = _absent_if_null(
        "MS-SSIM (Wang, Simoncelli and Bovik, 2003) as pytorch_msssim 1.0.0 computes "
        "it with data_range=1: five scales, weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333. 1 for "
        "identical images; higher is more alike; both sides at least 161 px. Opt-in: absent "
        "unless asked for."
    )


class LayerScores(BaseModel):
    """Unweighted per-tap values."""

    relu1_1: float = Field(description="Value at VGG19 relu1_1 (64 channels, full size).")
    relu2_1: float = Field(description="Value at VGG19 relu2_1 (128 channels, 1/2 size).")
    relu3_1: float = Field(description="Value at VGG19 relu3_1 (256 channels, 1/4 size).")
    relu4_1: float = Field(description="Value at VGG19 relu4_1 (512 channels, 1/8 size).")
    relu5_1: float = Field(description="Value at VGG19 relu5_1 (512 channels, 1/16 size).")


class Layers(BaseModel):
    """Per-tap values of the feature scores; null for a score not asked for."""

    vgg: LayerScores | None = Field(None, description="mean|phi_i(x) - phi_i(y)| per tap.")
    style: LayerScores | None = Field(None, description="mean|G_i(x) - G_i(y)| per tap.")


class Size(BaseModel):
    """A size in pixels."""

    width: int = Field(description="Width in pixels.", examples=[512])
    height: int = Field(description="Height in pixels.", examples=[512])


class ImageInfo(BaseModel):
    """What was compared: sizes before and after the size policy."""

    width: int = Field(description="Width compared, after any resize.")
    height: int = Field(description="Height compared, after any resize.")
    reference: Size = Field(description="The reference's size as uploaded (EXIF-oriented).")
    candidate: Size = Field(description="The candidate's size as uploaded (EXIF-oriented).")
    reference_resized: bool = Field(description="The reference was downscaled to max_side.")
    candidate_resized: bool = Field(
        description="The candidate was resized (to the reference's size, or to max_side)."
    )
    resized: bool = Field(description="Either image was resized.")
    mask_coverage: float | None = Field(
        None,
        description="With a mask: the fraction of the compared pixels inside it; null without.",
        examples=[None],
    )


class Timing(BaseModel):
    """Where the time went, in milliseconds."""

    decode_ms: float = Field(description="Decoding and resizing the uploads.", examples=[6.1])
    queue_ms: float = Field(description="Waiting in the batch queue.", examples=[1.2])
    compute_ms: float = Field(
        description="Time of the batch this pair was scored in.", examples=[9.8]
    )
    total_ms: float = Field(description="The whole request, as the server saw it.", examples=[17.5])
    batch_size: int = Field(description="Pairs in the batch this pair was scored in.", examples=[4])


COMPARE_EXAMPLE: dict[str, Any] = {
    "scores": {
        "vgg": 0.5123,
        "style": 0.0042,
        "ssim": 0.8731,
        "mse": 0.0021,
        "psnr": 26.78,
    },
    "layers": {
        "vgg": dict.fromkeys(TAP_NAMES, 0.1),
        "style": dict.fromkeys(TAP_NAMES, 0.001),
    },
    "image": {
        "width": 512,
        "height": 512,
        "reference": {"width": 512, "height": 512},
        "candidate": {"width": 1024, "height": 1024},
        "reference_resized": False,
        "candidate_resized": True,
        "resized": True,
    },
    "model": {
        "name": "vgg19",
        "weights": "imagenet",
        "sha256": "dcbb9e9d3f5a",
        "device": "cuda:0",
        "precision": "fp32",
    },
    "timing_ms": {
        "decode_ms": 6.1,
        "queue_ms": 1.2,
        "compute_ms": 9.8,
        "total_ms": 17.5,
        "batch_size": 4,
    },
    "reference_cached": False,
    "verdict": {"passed": False, "failed": ["ssim>=0.92"]},
}


class CompareResponse(BaseModel):
    """The scores of one pair and what was compared."""

    model_config = ConfigDict(json_schema_extra={"examples": [COMPARE_EXAMPLE]})

    scores: Scores = Field(
        description="The scores: the five defaults (null where not asked for), and the opt-in "
        "ones asked for."
    )
    layers: Layers = Field(description="Per-tap values of vgg and style.")
    image: ImageInfo = Field(description="What was compared.")
    model: ModelOut = Field(description="What scored it.")
    timing_ms: Timing = Field(description="Where the time went.")
    reference_cached: bool = Field(
        False, description="The reference's features came from the reference cache."
    )
    map_png_base64: str | None = Field(
        None,
        description="With include_map=true: the map_kind difference map (as POST /compare/map "
        "returns it) as base64 PNG at the compared size; null otherwise.",
    )
    verdict: Verdict | None = Field(
        None,
        description="With thresholds (the request's field, or SIMSCORE_THRESHOLDS): whether "
        "every condition held and which did not; null without. Inclusive bounds; "
        f"{directions_text()}; an infinite psnr (identical images, null in 'scores') passes "
        "any >= condition on psnr.",
    )


class BatchResponse(BaseModel):
    """One item per candidate, in the order given."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        COMPARE_EXAMPLE,
                        {"error": {"status": 400, "detail": "candidates[1] is an empty file"}},
                    ],
                    "summary": {"passed": 0, "failed": 1, "errors": 1},
                }
            ]
        }
    )

    results: list[CompareResponse | BatchItemError] = Field(
        description="In the order the candidates were given: a /compare object, or "
        '{"error": {"status": ..., "detail": ...}} for a candidate that failed alone.'
    )
    summary: BatchSummary | None = _absent_if_null(
        "With thresholds: how many candidates passed, failed, and could not be "
        "scored (errors). Absent without thresholds."
    )


def compare_response(
    comparison: Comparison,
    model: ModelInfo,
    total_ms: float,
    thresholds: Thresholds | None = None,
) -> CompareResponse:
    s = comparison.scores
    ref, cand = comparison.reference, comparison.candidate
    values = {name: s.value(name) for name in SCORE_NAMES}
    if values["psnr"] is not None and not math.isfinite(values["psnr"]):
        values["psnr"] = None  # identical images: JSON has no infinity
    return CompareResponse(
        scores=Scores(**values),
        layers=Layers(
            vgg=LayerScores(**s.vgg_layers) if s.vgg_layers else None,
            style=LayerScores(**s.style_layers) if s.style_layers else None,
        ),
        image=ImageInfo(
            width=ref.width,
            height=ref.height,
            reference=Size(width=ref.original_size[0], height=ref.original_size[1]),
            candidate=Size(width=cand.original_size[0], height=cand.original_size[1]),
            reference_resized=ref.resized,
            candidate_resized=cand.resized,
            resized=ref.resized or cand.resized,
            mask_coverage=comparison.mask_coverage,
        ),
        model=model_out(model, s),
        timing_ms=Timing(
            decode_ms=round(comparison.decode_ms, 3),
            queue_ms=round(comparison.queue_ms, 3),
            compute_ms=round(comparison.compute_ms, 3),
            total_ms=round(total_ms, 3),
            batch_size=comparison.batch_size,
        ),
        reference_cached=s.reference_cached,
        verdict=verdict_out(s, thresholds),
    )
