"""Separable filtering as banded products against PyTorch's convolution in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from app.scores.separable import (
    _mkl_threads_local,
    band_matrix,
    filter_columns,
    filter_rows,
    fp32_math,
    one_blas_thread,
)


def correlate_rows(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid correlation down the columns of a 2-D tensor, float64."""
    return F.conv1d(x.double().t().unsqueeze(1), taps.double().view(1, 1, -1)).squeeze(1).t()


@pytest.mark.parametrize(
    ("length", "columns", "taps"),
    [(532, 70, 21), (48, 7, 21), (21, 5, 21), (37, 20, 11), (16, 3, 1), (11, 11, 11)],
)
def test_filter_rows_is_a_valid_correlation(length: int, columns: int, taps: int) -> None:
    generator = torch.Generator().manual_seed(length * columns + taps)
    x = torch.rand(length, columns, generator=generator)
    weights = torch.rand(taps, generator=generator) - 0.3
    got = filter_rows(x, band_matrix(weights))
    assert got.shape == (length - taps + 1, columns)
    torch.testing.assert_close(got.double(), correlate_rows(x, weights), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("count", "length", "taps"), [(64, 532, 21), (9, 40, 21), (5, 11, 11)])
def test_filter_columns_filters_each_row_and_writes_only_its_target(
    count: int, length: int, taps: int
) -> None:
    generator = torch.Generator().manual_seed(count + length)
    wide = torch.rand(count, length + 9, generator=generator)
    x = wide[:, 4 : 4 + length]  # a row stride larger than the row
    weights = torch.rand(taps, generator=generator)
    target = torch.full((count, length + 3), -7.0)
    filter_columns(x, band_matrix(weights), out=target[:, 2 : 2 + length - taps + 1])
    expected = correlate_rows(x.t(), weights).t()
    torch.testing.assert_close(
        target[:, 2 : 2 + length - taps + 1].double(), expected, rtol=0, atol=1e-5
    )
    untouched = torch.cat([target[:, :2], target[:, 2 + length - taps + 1 :]], dim=1)
    assert bool((untouched == -7.0).all())


def test_band_matrix_holds_the_taps_on_its_diagonals() -> None:
    band = band_matrix(torch.tensor([1.0, 2.0, 3.0]), block=4)
    assert band.shape == (4, 6)
    assert band[2].tolist() == [0.0, 0.0, 1.0, 2.0, 3.0, 0.0]


def test_too_short_an_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 21"):
        filter_rows(torch.rand(20, 4), band_matrix(torch.rand(21)))


def test_fp32_math_switches_autocast_off() -> None:
    a, b = torch.rand(8, 8), torch.rand(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with fp32_math(torch.device("cpu")):
            assert (a @ b).dtype == torch.float32
        assert (a @ b).dtype == torch.bfloat16


def test_one_blas_thread_sets_mkl_for_this_thread_and_restores_it() -> None:
    setter = _mkl_threads_local()
    if setter is None:
        pytest.skip("this torch has no MKL")
    before = setter(0)  # the setter returns the setting it replaces (0: the global one)
    setter(before)
    with one_blas_thread(torch.device("cpu")):
        assert setter(1) == 1
        torch.rand(64, 64) @ torch.rand(64, 64)
    assert setter(before) == before
