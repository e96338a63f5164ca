"""The budgets (``app.budgets``): one class, three settings; a refusal counts nothing and names
its setting; ``holding`` gives everything back, on errors too; concurrent takes never pass the
limit."""

from __future__ import annotations

import threading

import pytest

from app.budgets import DecodedBytes, RequestPixels, UploadBytes
from app.errors import ImageTooLarge, Overloaded


@pytest.mark.parametrize(
    ("budget", "error", "setting"),
    [
        (UploadBytes(100), Overloaded, "SIMSCORE_UPLOAD_MEMORY_BYTES=100"),
        (DecodedBytes(100), Overloaded, "SIMSCORE_DECODED_MEMORY_BYTES=100"),
        (RequestPixels(100), ImageTooLarge, "SIMSCORE_MAX_REQUEST_PIXELS=100"),
    ],
)
def test_a_refusal_names_its_setting_and_counts_nothing(
    budget: UploadBytes, error: type[Exception], setting: str
) -> None:
    budget.take(60, "reference")
    with pytest.raises(error, match=setting):
        budget.take(41, "candidate")
    assert budget.used == 60
    budget.take(40)
    assert budget.used == 100


def test_holding_gives_everything_back_even_on_errors() -> None:
    budget = DecodedBytes(100)

    def hold_too_much() -> None:
        with budget.holding() as take:
            take(30, "reference")
            take(50, "candidate")
            assert budget.used == 80
            take(30, "candidate")  # refused: 110

    with pytest.raises(Overloaded):
        hold_too_much()
    assert budget.used == 0


def test_concurrent_takes_never_pass_the_limit() -> None:
    budget = UploadBytes(1000)
    refused = []

    def take() -> None:
        for _ in range(200):
            try:
                budget.take(3)
            except Overloaded:
                refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.used == 999
    assert len(refused) == 4 * 200 - 333
