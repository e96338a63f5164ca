"""What the model registry knows of a backbone, the networks built on it and their scores.

Plain data: the registry (``app.models.registry``) holds one ``BackboneSpec`` per backbone, and
``app.models.weights`` reads a spec to load that backbone's files. Nothing here touches a file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

Direction = Literal["lower", "higher"]


@dataclass(frozen=True)
class HeadSpec:
    """A learned head shipped in the package (``app/models/heads/<filename>``)."""

    filename: str
    sha256: str  # full hex digest; verified at every load
    origin: str  # where the file was copied from
    licence: str  # the licence it is shipped under (its text: heads/LICENSE.<name>)


@dataclass(frozen=True)
class ScoreSpec:
    """A score a network's taps feed: its name in the API, its direction and its head."""

    name: str
    direction: Direction  # "lower": lower is more alike
    head: HeadSpec | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """A tap network built on a backbone's ``features``: ``build(features)`` returns a module
    taking ``(N, 3, H, W)`` in [0, 1] and returning its list of taps."""

    name: str
    build: Callable[[nn.Sequential], nn.Module]
    min_side: int  # the smallest height and width the network accepts (found by running it)
    scores: tuple[ScoreSpec, ...]


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: where its weights come from, how to build it, which networks use it.

    ``imagenet`` is torchvision's weights enum member; its file name carries the first 8 hex
    digits of the file's sha256 (torchvision's convention). ``sha256`` is the full digest of that
    official file, checked after a download and at every load from the hub cache (``None``: not
    pinned, the file is trusted as before).
    """

    name: str
    title: str  # as logs and messages name it ("AlexNet")
    setting: str  # the environment variable naming its weights ("SIMSCORE_ALEXNET_WEIGHTS")
    imagenet: Any  # a torchvision ``WeightsEnum`` member (``AlexNet_Weights.IMAGENET1K_V1``)
    sha256: str | None
    sha256_source: str  # where the full digest comes from
    build_features: Callable[[], nn.Sequential]  # torchvision's ``features[:n]``, uninitialised
    networks: tuple[NetworkSpec, ...]

    @property
    def fetch_command(self) -> str:
        return f"simscore fetch-weights --backbone {self.name}"

    @property
    def url(self) -> str:
        return str(self.imagenet.url)

    @property
    def scores(self) -> tuple[str, ...]:
        return tuple(score.name for network in self.networks for score in network.scores)
