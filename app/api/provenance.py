"""What scored an answer: the ``model`` field (VGG19's weights, the device, the precision, and
the other backbones the answer's scores ran)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.scoring import ModelInfo, PairScores
from app.scoring.catalog import backbone_of
from app.vocabulary import SCORE_NAMES


def backbone_name(score: str) -> str | None:
    """The backbone behind a score other than VGG19 (None: VGG19's, or no network)."""
    found = backbone_of(score)
    return found[0] if found is not None and found[0] != "vgg19" else None


class BackboneOut(BaseModel):
    """Where a backbone's weights came from."""

    weights: str = Field(
        description="imagenet, file or random (development only).", examples=["imagenet"]
    )
    sha256: str = Field(
        description="First 12 hex digits of the weights' sha256.", examples=["7be5be791159"]
    )


class ModelOut(BaseModel):
    """The model that produced the scores."""

    name: str = Field(description="Model name.", examples=["vgg19"])
    weights: str = Field(
        description="imagenet, file or random (development only).", examples=["imagenet"]
    )
    sha256: str = Field(
        description="First 12 hex digits of the weights' sha256.", examples=["dcbb9e9d3f5a"]
    )
    device: str = Field(description="Torch device the model runs on.", examples=["cuda:0"])
    precision: str = Field(
        description="fp32, or bf16/fp16 autocast for the networks' forward passes.",
        examples=["fp32"],
    )
    backbones: dict[str, BackboneOut] | None = Field(
        None,
        description="The other backbones this answer's scores ran (alexnet for lpips, vgg16 for "
        "lpips_vgg and dists), by name: where their weights came from. Absent when the answer "
        "used none (name, weights and sha256 above are VGG19's).",
        exclude_if=lambda value: not value,
    )


def model_out(model: ModelInfo, scores: PairScores | None = None) -> ModelOut:
    """The ``model`` field; with ``scores``, the other backbones those scores ran."""
    computed = [n for n in SCORE_NAMES if scores is not None and scores.value(n) is not None]
    used = {backbone_name(name) for name in computed}
    return ModelOut(
        name=model.name,
        weights=model.weights,
        sha256=model.sha256,
        device=model.device,
        precision=model.precision,
        backbones={
            name: BackboneOut(weights=found.weights, sha256=found.sha256)
            for name, found in sorted(model.backbones.items())
            if name in used
        },
    )
