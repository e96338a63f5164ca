"""Errors the server answers, typed by status; each carries the server's ``detail``."""

from __future__ import annotations


class SimscoreAPIError(Exception):
    """The server answered an error; ``detail`` is its explanation, ``status`` the HTTP code.

    Also the item type of a failed candidate in ``compare_batch`` results."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.request_id = request_id
        self.retry_after_s = retry_after_s


class InvalidImageError(SimscoreAPIError):
    """400 or 415: not an image the server can decode, or a refused format."""


class AuthenticationError(SimscoreAPIError):
    """401: missing or invalid API key."""


class PayloadTooLargeError(SimscoreAPIError):
    """413: an upload or image over the server's limits."""


class InvalidRequestError(SimscoreAPIError):
    """422: a missing or bad field, an image too small, sizes that differ under 'strict'."""


class UploadTimeoutError(SimscoreAPIError):
    """408: the upload stalled longer than the server waits for it."""


class OverloadedError(SimscoreAPIError):
    """429: the server's queue is full (raised once the retries are spent)."""


class UnavailableError(SimscoreAPIError):
    """503: loading or draining (raised once the retries are spent)."""


class DeadlineError(SimscoreAPIError):
    """504: the server gave up after SIMSCORE_REQUEST_TIMEOUT_S."""


class ServerError(SimscoreAPIError):
    """Any other status: a bug or a proxy in the way."""


_ERRORS: dict[int, type[SimscoreAPIError]] = {
    400: InvalidImageError,
    415: InvalidImageError,
    401: AuthenticationError,
    408: UploadTimeoutError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: OverloadedError,
    503: UnavailableError,
    504: DeadlineError,
}


def api_error(
    status: int,
    detail: str,
    *,
    request_id: str | None = None,
    retry_after_s: float | None = None,
) -> SimscoreAPIError:
    """The typed error for ``status``."""
    kind = _ERRORS.get(status, ServerError)
    return kind(status, detail, request_id=request_id, retry_after_s=retry_after_s)
