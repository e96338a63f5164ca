"""The scores with a pipeline of their own on the pixels, no network: FLIP (and its error map)
and MS-SSIM, for the pairs of a batch that asked for them.

FLIP: the pairs are grouped by reference and viewing conditions (``PairRequest.ppd``); each
group's reference is filtered once (``app.scores.flip.flip_against``: the reference's share of
a /compare/batch done once), and the mean of each map is the score, over the mask where the
pair has one. A pair whose ``map_kind`` is ``flip`` gets its map back with its scores.
MS-SSIM: the pairs that share a reference in one call that does the reference's share once
(``app.scores.ms_ssim_against``), the others all at once (``app.scores.ms_ssim``); a masked
pair with its mask carried down the scales. Either way a pair gets its own value.
Both run in IEEE fp32 whatever the precision mode: they never touch the network, and their
functions switch autocast and TF32 off themselves.
"""

from __future__ import annotations

import torch

from app.scores import flip_against, mean_error, ms_ssim, ms_ssim_against
from app.scoring.references import BatchReferences
from app.scoring.regions import Regions
from app.scoring.sheet import ScoreSheet
from app.scoring.taps import Timings, take
from app.scoring.types import PairRequest


def score_flip(
    sheet: ScoreSheet,
    pairs: list[PairRequest],
    refs: BatchReferences,
    images: tuple[torch.Tensor, torch.Tensor],
    regions: Regions,
    timings: Timings,
) -> None:
    """``flip`` for the pairs that asked for it, and the ``flip`` maps asked for."""
    drawn = set(sheet.rows_drawing({"flip"}))
    rows = sorted(set(sheet.rows_wanting({"flip"})) | drawn)
    if not rows:
        return
    x, y = images
    groups: dict[tuple[int, float], list[int]] = {}
    for row in rows:
        groups.setdefault((refs.index[row], pairs[row].ppd), []).append(row)
    maps: dict[int, torch.Tensor] = {}
    with timings.score("flip"):
        for (_, ppd), members in groups.items():
            first = members[0]
            errors = flip_against(x[first : first + 1], take(y, members), ppd=ppd)
            maps.update(zip(members, errors, strict=True))
        for part, mask in regions.split(sheet.rows_wanting({"flip"})):
            stacked = torch.stack([maps[row] for row in part])
            sheet.put("flip", part, mean_error(stacked, mask=mask))
    for row in sorted(drawn):
        sheet.put_map(row, maps[row][0])


def score_ms_ssim(
    sheet: ScoreSheet,
    refs: BatchReferences,
    images: tuple[torch.Tensor, torch.Tensor],
    regions: Regions,
    timings: Timings,
) -> None:
    """``ms_ssim`` for the pairs that asked for it (the prepare stage refused smaller images):
    each group of pairs sharing a reference in one call, the pairs alone with theirs together."""
    x, y = images
    for part, mask in regions.split(sheet.rows_wanting({"ms_ssim"})):
        groups: dict[int, list[int]] = {}  # reference -> positions in part
        for position, row in enumerate(part):
            groups.setdefault(refs.index[row], []).append(position)
        alone = [p for members in groups.values() if len(members) == 1 for p in members]
        calls = [(alone, False)] if alone else []
        calls += [(members, True) for members in groups.values() if len(members) > 1]
        with timings.score("ms_ssim"):
            for members, one_reference in calls:
                rows = [part[p] for p in members]
                picked = None if mask is None else take(mask, members)
                if one_reference:
                    first = rows[0]
                    values = ms_ssim_against(x[first : first + 1], take(y, rows), mask=picked)
                else:
                    values = ms_ssim(take(x, rows), take(y, rows), mask=picked)
                sheet.put("ms_ssim", rows, values)
