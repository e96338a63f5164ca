"""Domain errors. Each names what went wrong in words a user can act on.

The HTTP layer (``app.api.errors``) is the one place that maps these to status codes.
"""

from __future__ import annotations


class SimscoreError(Exception):
    """Base of every error simscore raises on purpose."""


class InputError(SimscoreError):
    """The request's input cannot be scored (maps to a 4xx)."""


class NotAnImage(InputError):
    """The bytes are not an image we can decode (empty, truncated, unknown format)."""


class UnsupportedImageFormat(InputError):
    """A recognised format we refuse on purpose (SVG, PDF, RLE BMP, pathological files)."""


class ImageTooLarge(InputError):
    """Over ``SIMSCORE_MAX_PIXELS``, ``SIMSCORE_MAX_REQUEST_PIXELS`` or an upload size limit."""


class ImageTooSmall(InputError):
    """A side under the 16 px minimum that VGG19 and SSIM need."""


class SizeMismatch(InputError):
    """Reference and candidate differ in size under the ``strict`` size policy."""


class InvalidRequest(InputError):
    """A form field is missing, misnamed or has a bad value (unknown metric, ...)."""


class ScoreUnavailable(InputError):
    """A score this server cannot compute as configured: its backbone's weights are absent
    (the detail names the setting and ``simscore fetch-weights --backbone NAME``). Maps to 422:
    the request asks for what this server does not offer; retrying does not help."""


class MalformedBody(InputError):
    """The request body is not well-formed multipart/form-data (maps to 400)."""


class UploadStalled(InputError):
    """The request body stopped arriving for longer than ``SIMSCORE_BODY_TIMEOUT_S``."""


class Unauthorized(SimscoreError):
    """A missing or wrong API key."""


class WeightsError(SimscoreError):
    """Model weights are missing, corrupt, or of the wrong shape (start-up fails)."""


class StartupError(SimscoreError):
    """The service cannot start as configured (bf16 on a CPU without bf16 units, ...)."""


class Overloaded(SimscoreError):
    """The queue or the request slots are full: come back later (maps to 429)."""


class NotReady(SimscoreError):
    """The model is not loaded yet, or the server is draining (maps to 503)."""


class DeadlineExceeded(SimscoreError):
    """The request ran past ``SIMSCORE_REQUEST_TIMEOUT_S`` (maps to 504)."""


class DeviceFailed(SimscoreError):
    """The GPU hit a sticky error (illegal address, device-side assert, ECC error...): this
    process cannot score any more and exits to be restarted (maps to 503)."""


class OutOfMemory(SimscoreError):
    """The device ran out of memory even for a single item."""


class ClientGone(SimscoreError):
    """The client closed the connection before its result was ready (nothing is sent)."""


class ImageTooSmallForScore(ImageTooSmall, ValueError):
    """A side too short for one score that was asked for (MS-SSIM's five scales need more than
    160 px); the other scores have no such limit. ``minimum_px`` is the smallest side it takes."""

    def __init__(self, message: str, *, score: str, minimum_px: int) -> None:
        super().__init__(message)
        self.score = score
        self.minimum_px = minimum_px


class InvalidViewingConditions(InvalidRequest, ValueError):
    """FLIP viewing conditions (``parameter``: ppd, distance_m, ...) that are not finite, not
    above 0, given together with ppd, or outside the ppd range FLIP runs at here."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
