"""Scoring: a batch of pairs -> one forward pass per network its pairs need -> every requested
score per pair.

``runner`` (the networks on their device), ``references`` (per-batch reference bookkeeping and
the reference cache), ``scorer`` (the engine; ``network_scores`` for lpips, lpips_vgg and dists),
``catalog`` (every score and whether this server can compute it), ``factory`` (all of it from
``Settings``; ``backbones`` loads the optional ones).
"""

from app.scoring.catalog import Catalog, ScoreInfo
from app.scoring.device import is_out_of_memory
from app.scoring.factory import build_scorer
from app.scoring.references import ReferenceCache, ReferenceFeatures, reference_key
from app.scoring.runner import ModelRunner
from app.scoring.scorer import Scorer
from app.scoring.types import BackboneWeights, ModelInfo, PairRequest, PairScores

__all__ = [
    "BackboneWeights",
    "Catalog",
    "ModelInfo",
    "ModelRunner",
    "PairRequest",
    "PairScores",
    "ReferenceCache",
    "ReferenceFeatures",
    "ScoreInfo",
    "Scorer",
    "build_scorer",
    "is_out_of_memory",
    "reference_key",
]
