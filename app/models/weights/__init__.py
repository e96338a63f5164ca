"""Where every backbone's weights come from: the torch hub cache, a local file, or a seeded random
init; and the learned heads shipped in the package.

This package is the only code that reads or writes weight files, and nothing here runs at import.
Each backbone of ``app.models.registry`` is loaded through the same path (``load_backbone``):

* ``imagenet``: torchvision's weights (``VGG19_Weights.IMAGENET1K_V1``, ...) through the torch
  hub cache (``$TORCH_HOME/hub/checkpoints``). A pinned full sha256 (AlexNet, VGG16) is checked
  after a download and at every load. Not cached: ``load_backbone`` answers ``Unavailable``
  (naming the setting and ``simscore fetch-weights --backbone NAME``), unless asked to download.
* a path: a torchvision ``state_dict`` (full, with ``features.N.*`` keys, or features-only, with
  ``N.*`` keys). Every shape is checked; an optional expected sha256 is verified. A path that
  does not exist is ``Unavailable`` as well.
* ``random``: a seeded random backbone for development only. It is loud: a warning in the log and
  ``"weights": "random"`` in every result's ``model`` field.

A file that exists but is wrong (corrupt, another network, a sha256 mismatch) raises
``WeightsError``: absent weights are a state the service can run in, wrong ones are a mistake.
"""

from app.models.weights.backbones import (
    FULL_PREFIX,
    IMAGENET,
    RANDOM,
    Loaded,
    Unavailable,
    WeightsInfo,
    features_only,
    fetch_imagenet,
    imagenet_cache_path,
    load_backbone,
    load_features,
    random_state_dict,
    weights_for,
)
from app.models.weights.files import (
    read_state_dict,
    save_state_dict,
    sha256_file,
    state_dict_sha256,
)
from app.models.weights.heads import HEADS_DIR, load_dists_head, load_lpips_head, read_head

__all__ = [
    "FULL_PREFIX",
    "HEADS_DIR",
    "IMAGENET",
    "RANDOM",
    "Loaded",
    "Unavailable",
    "WeightsInfo",
    "features_only",
    "fetch_imagenet",
    "imagenet_cache_path",
    "load_backbone",
    "load_dists_head",
    "load_features",
    "load_lpips_head",
    "random_state_dict",
    "read_head",
    "read_state_dict",
    "save_state_dict",
    "sha256_file",
    "state_dict_sha256",
    "weights_for",
]
