"""The model registry: every backbone, the networks built on it, the scores they feed.

One entry per backbone says its weights setting, torchvision's weights enum and the official
file's sha256, how to build it and which networks (and so which scores) need it; the learned
heads of those scores are named beside them. ``app.models.weights`` loads what an entry
describes. Adding a backbone is one entry here plus its score module in ``app.scores``.

Full sha256 digests: torchvision names its files ``<name>-<first 8 hex of sha256>.pth`` and
checks those 8 digits when it downloads. The full digests below are the sha256 of those files
as published at download.pytorch.org; they were not computed here (no machine of this project
can download them) but taken from independent public records that agree with each other and
with torchvision's 8-digit prefix (file sizes: AlexNet 244,408,911 bytes, VGG16 553,433,881);
a test checks that each extends the prefix in torchvision's URL. A download is verified against
the full digest (torch hub's ``hash_prefix``) and so is every load from the hub cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from torchvision.models import AlexNet_Weights, VGG16_Weights, VGG19_Weights

from app.models.alexnet import ALEXNET_MIN_SIDE, build_alexnet_features, lpips_alexnet
from app.models.dists import DISTS_MIN_SIDE, dists_vgg16
from app.models.spec import BackboneSpec, HeadSpec, NetworkSpec, ScoreSpec
from app.models.vgg import VGGFeatures, build_vgg19_features
from app.models.vgg16 import VGG16_LPIPS_MIN_SIDE, build_vgg16_features, lpips_vgg16
from app.vocabulary import MIN_SIDE

LPIPS = "lpips"
LPIPS_VGG = "lpips_vgg"
DISTS = "dists"

LPIPS_ORIGIN = "lpips 0.1.4 wheel (PyPI), lpips/weights/v0.1/{net}.pth"
LPIPS_ALEX_HEAD = HeadSpec(
    filename="lpips_v0.1_alex.pth",
    sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    origin=LPIPS_ORIGIN.format(net="alex"),
    licence="BSD-2-Clause",
)
LPIPS_VGG_HEAD = HeadSpec(
    filename="lpips_v0.1_vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    origin=LPIPS_ORIGIN.format(net="vgg"),
    licence="BSD-2-Clause",
)
DISTS_HEAD = HeadSpec(
    filename="dists_alpha_beta.pt",
    sha256="f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218",
    origin="DISTS_pytorch 0.1 wheel (PyPI, dists-pytorch), DISTS_pytorch/weights.pt",
    licence="MIT",
)

VGG19 = BackboneSpec(
    name="vgg19",
    title="VGG19",
    setting="SIMSCORE_WEIGHTS",
    imagenet=VGG19_Weights.IMAGENET1K_V1,
    sha256=None,
    sha256_source="not pinned (SIMSCORE_WEIGHTS_SHA256 pins a file)",
    build_features=build_vgg19_features,
    networks=(
        NetworkSpec(
            name="vgg19",
            build=VGGFeatures,
            min_side=MIN_SIDE,
            scores=(ScoreSpec("vgg", "lower"), ScoreSpec("style", "lower")),
        ),
    ),
)
ALEXNET = BackboneSpec(
    name="alexnet",
    title="AlexNet",
    setting="SIMSCORE_ALEXNET_WEIGHTS",
    imagenet=AlexNet_Weights.IMAGENET1K_V1,
    sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
    sha256_source="public records of alexnet-owt-7be5be79.pth (see the module docstring)",
    build_features=build_alexnet_features,
    networks=(
        NetworkSpec(
            name="lpips_alexnet",
            build=lpips_alexnet,
            min_side=ALEXNET_MIN_SIDE,
            scores=(ScoreSpec(LPIPS, "lower", LPIPS_ALEX_HEAD),),
        ),
    ),
)
VGG16 = BackboneSpec(
    name="vgg16",
    title="VGG16",
    setting="SIMSCORE_VGG16_WEIGHTS",
    imagenet=VGG16_Weights.IMAGENET1K_V1,
    sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
    sha256_source="public records of vgg16-397923af.pth (see the module docstring)",
    build_features=build_vgg16_features,
    networks=(
        NetworkSpec(
            name="lpips_vgg16",
            build=lpips_vgg16,
            min_side=VGG16_LPIPS_MIN_SIDE,
            scores=(ScoreSpec(LPIPS_VGG, "lower", LPIPS_VGG_HEAD),),
        ),
        NetworkSpec(
            name="dists_vgg16",
            build=dists_vgg16,
            min_side=DISTS_MIN_SIDE,
            scores=(ScoreSpec(DISTS, "lower", DISTS_HEAD),),
        ),
    ),
)

BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (VGG19, ALEXNET, VGG16)}


def backbone(name: str) -> BackboneSpec:
    """The entry called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


def network_of(score: str) -> tuple[BackboneSpec, NetworkSpec, ScoreSpec]:
    """The backbone, the network and the entry of a score that needs a network."""
    for spec in BACKBONES.values():
        for network in spec.networks:
            for entry in network.scores:
                if entry.name == score:
                    return spec, network, entry
    raise KeyError(f"no network computes {score!r}")


def networked_scores() -> tuple[str, ...]:
    """Every score a network of the registry computes, in registry order."""
    return tuple(name for spec in BACKBONES.values() for name in spec.scores)


def networks_for(scores: Iterable[str]) -> tuple[tuple[BackboneSpec, NetworkSpec], ...]:
    """The networks ``scores`` need, each once, in registry order (scores that need no
    network, such as ssim or mse, add none)."""
    wanted = set(scores)
    return tuple(
        (spec, network)
        for spec in BACKBONES.values()
        for network in spec.networks
        if wanted.intersection(entry.name for entry in network.scores)
    )


def min_side(score: str) -> int:
    """The smallest side the network behind ``score`` accepts."""
    return network_of(score)[1].min_side
