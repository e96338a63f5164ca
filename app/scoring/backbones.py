"""The optional backbones (AlexNet, VGG16) at start-up: loaded through the one weights path when
their weights are found, or recorded as unavailable, with why, when they are not.

VGG19 is required: ``app.models.weights.load_features`` fails start-up without it. The others
are optional: absent weights (``Unavailable``: not in the torch hub cache, no such file) leave
the service running without their scores, which answer 422 naming the setting and the fetch
command; weights that are there but wrong (corrupt, another network, a sha256 mismatch) stop
start-up with ``WeightsError``, as VGG19's do. ``SIMSCORE_WEIGHTS=random`` makes every backbone
whose own setting is unset random too (each says so in the log).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from torch import nn

from app.config import Settings
from app.models import registry
from app.models.weights import Unavailable, WeightsInfo, load_backbone, weights_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptionalBackbones:
    """What start-up found of the optional backbones."""

    networks: dict[str, nn.Module] = field(default_factory=dict)  # by registry network name
    weights: dict[str, WeightsInfo] = field(default_factory=dict)  # by backbone, when loaded
    unavailable: dict[str, str] = field(default_factory=dict)  # by backbone: why, what to do


def load_optional_backbones(settings: Settings) -> OptionalBackbones:
    """Every backbone of the registry but VGG19, each through ``load_backbone`` with its own
    setting (``SIMSCORE_ALEXNET_WEIGHTS``, ``SIMSCORE_VGG16_WEIGHTS``) and sha256."""
    found = OptionalBackbones()
    for spec in registry.BACKBONES.values():
        if spec is registry.VGG19:
            continue
        own, expected = settings.backbone_weights(spec.setting)
        source = weights_for(spec, own, settings.weights)
        loaded = load_backbone(
            spec, source, seed=settings.random_seed, expected_sha256=expected, download=False
        )
        if isinstance(loaded, Unavailable):
            scores = ", ".join(spec.scores)
            log.warning("%s Until then, unavailable: %s.", loaded.message, scores)
            found.unavailable[spec.name] = loaded.message
            continue
        for network in spec.networks:  # VGG16's two networks share one copy of its weights
            found.networks[network.name] = network.build(loaded.features)
        found.weights[spec.name] = loaded.info
        log.info(
            "%s loaded: weights=%s sha256=%s, for %s",
            spec.title,
            loaded.info.source,
            loaded.info.short_sha256,
            ", ".join(spec.scores),
        )
    return found
