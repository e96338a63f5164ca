"""DISTS (deep image structure and texture similarity), per pair, from DISTS's VGG16 taps.

For taps k = 0..5 (k = 0 the image itself in [0, 1], then relu1_2 .. relu5_3 of a VGG16 whose max
pools are L2 pools; ``app.models.dists``), per channel c with spatial means mu, variances
sigma^2 and covariance sigma_xy:

    S1_kc = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)                  (texture: the means)
    S2_kc = (2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2)              (structure: covariance)
    dists(x, y) = 1 - sum_{k,c} (alpha_kc S1_kc + beta_kc S2_kc) / (sum alpha + sum beta)

with c1 = c2 = 1e-6, sigma^2 = mean((x - mu)^2) and sigma_xy = mean(x y) - mu_x mu_y (population
statistics, as the package writes them), and alpha, beta the published weights (``(1, 1475, 1,
1)`` each). Lower is more alike.

Computed without the cancellation in ``1 - sum(...)``: since the normalised weights sum to 1,

    dists = sum_{k,c} (alpha_kc (1 - S1_kc) + beta_kc (1 - S2_kc)) / (sum alpha + sum beta),
    1 - S1 = (mu_x - mu_y)^2 / (mu_x^2 + mu_y^2 + c1),
    1 - S2 = sigma^2_{x-y} / (sigma_x^2 + sigma_y^2 + c2),     sigma^2_{x-y} = var(x - y),

equal in exact arithmetic (sigma_x^2 + sigma_y^2 - 2 sigma_xy = var(x - y)). Float32 keeps about 7
digits of a sum near 1, so the package's way leaves about 1e-7 absolute error in a score (1e-5
relative on a score of 0.005); this way leaves about 1e-9, and identical taps give exactly 0.

Ding, Ma, Wang, Simoncelli, "Image Quality Assessment: Unifying Structure and Texture
Similarity", IEEE TPAMI 2020 (arXiv:2004.07728). Equal to ``DISTS_pytorch.DISTS()(x, y)``
(DISTS_pytorch 0.1) given the same VGG16 weights, to 1e-4 relative or 1e-6 absolute (tested on
photographs; the difference is the package's own rounding); float32 math whatever precision the
backbone ran in, and no op autocast would lower.

With a region of interest: at each tap, m_k the fraction of each cell inside the mask (area
interpolation, ``app.scores.masks.tap_weights``; at tap 0, the image's resolution, the mask
itself), every spatial mean becomes the m_k-weighted mean ``E_m[z] = sum m_k z / sum m_k``:
mu = E_m[x], sigma^2 = E_m[(x - mu)^2], sigma_xy = E_m[x y] - mu_x mu_y (so var(x - y) =
E_m[(x - y - E_m[x - y])^2]). So a masked DISTS compares the statistics of the features inside
the mask; an all-ones mask gives the unmasked value, and a mask that selects whole cells of every
tap equals DISTS of the taps cropped to those cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

C1 = 1e-6
C2 = 1e-6

Mean = Callable[[torch.Tensor], torch.Tensor]


def dists(
    fx: Sequence[torch.Tensor],
    fy: Sequence[torch.Tensor],
    *,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    masks: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """DISTS per pair (see the module docstring).

    Args:
        fx, fy: per tap, the references' and the candidates' taps ``(N, C_k, H_k, W_k)``, the
            first the images themselves (``app.models.dists.dists_vgg16`` returns them so).
        alpha, beta: the published weights, ``sum_k C_k`` values each (any shape holding them,
            e.g. the file's ``(1, 1475, 1, 1)``: ``app.models.weights.load_dists_head``).
        masks: per tap, the region of interest as cell weights ``(N, 1, H_k, W_k)``.

    Returns:
        ``(N,)``.
    """
    if not fx or len(fx) != len(fy) or (masks is not None and len(masks) != len(fx)):
        raise ValueError("fx, fy (and masks) need one entry per tap")
    channels = [int(t.shape[1]) for t in fx]
    device = fx[0].device  # alpha and beta are best placed there once (else copied per call)
    a = alpha.to(device=device, dtype=torch.float32).flatten()
    b = beta.to(device=device, dtype=torch.float32).flatten()
    if a.numel() != sum(channels) or b.numel() != sum(channels):
        raise ValueError(f"alpha and beta need {sum(channels)} values (the taps' channels)")
    total = a.sum() + b.sum()
    alphas, betas = torch.split(a / total, channels), torch.split(b / total, channels)
    distance = torch.zeros((), dtype=torch.float32, device=device)
    for k, (x, y) in enumerate(zip(fx, fy, strict=True)):
        if x.shape != y.shape:
            raise ValueError(f"tap {k}: {tuple(x.shape)} vs {tuple(y.shape)}")
        mean = _mean if masks is None else _weighted(masks[k].float())
        texture, structure = _dissimilarities(x.float(), y.float(), mean)
        distance = distance + (alphas[k] * texture + betas[k] * structure).sum(dim=1)
    return distance


def _dissimilarities(x: torch.Tensor, y: torch.Tensor, mean: Mean) -> tuple[torch.Tensor, ...]:
    """``1 - S1`` and ``1 - S2`` per sample and channel, ``(N, C)`` each."""
    x_mean, y_mean = mean(x), mean(y)
    texture = (x_mean - y_mean) ** 2 / (x_mean**2 + y_mean**2 + C1)
    x_var = mean((x - x_mean[..., None, None]) ** 2)
    y_var = mean((y - y_mean[..., None, None]) ** 2)
    difference = x - y
    d_var = mean((difference - (x_mean - y_mean)[..., None, None]) ** 2)
    structure = d_var / (x_var + y_var + C2)
    return texture, structure


def _mean(z: torch.Tensor) -> torch.Tensor:
    return z.mean(dim=(2, 3))


def _weighted(weights: torch.Tensor) -> Mean:
    """``E_m[z]``: the mean over positions weighted by ``weights`` ``(N, 1, H, W)``."""
    norm = weights.sum(dim=(2, 3))

    def mean(z: torch.Tensor) -> torch.Tensor:
        return (z * weights).sum(dim=(2, 3)) / norm

    return mean
