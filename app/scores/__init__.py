"""Pure metric functions on batched tensors: one score per pair, no I/O, no web code."""

from app.scores.dists import dists
from app.scores.flip import flip, flip_against, flip_map, mean_error
from app.scores.gram import gram_matrices, gram_matrix, style_distance
from app.scores.lpips import lpips, lpips_map
from app.scores.masks import composite, coverage, tap_weights, window_centres
from app.scores.ms_ssim import ms_ssim, ms_ssim_against, scale_centres
from app.scores.mse import mse, psnr
from app.scores.perceptual import VGG_TAP_WEIGHTS, vgg_distance
from app.scores.ssim import gaussian_window, reference_moments, ssim, ssim_map

__all__ = [
    "VGG_TAP_WEIGHTS",
    "composite",
    "coverage",
    "dists",
    "flip",
    "flip_against",
    "flip_map",
    "gaussian_window",
    "gram_matrices",
    "gram_matrix",
    "lpips",
    "lpips_map",
    "mean_error",
    "ms_ssim",
    "ms_ssim_against",
    "mse",
    "psnr",
    "reference_moments",
    "scale_centres",
    "ssim",
    "ssim_map",
    "style_distance",
    "tap_weights",
    "vgg_distance",
    "window_centres",
]
