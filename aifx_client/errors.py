"""Errors raised by the AIFX client; every one is an AIFXError."""

from __future__ import annotations


class AIFXError(Exception):
    """Base class of every error the client raises."""


class MLDisabled(AIFXError):
    """The client is disabled (ML_API_ENABLED=false); no request was sent."""

    def __init__(self) -> None:
        super().__init__(
            "the AIFX ML API is disabled (ML_API_ENABLED=false): no request was sent; "
            "set ML_API_ENABLED=true to call the model service"
        )


class AIFXConnectionError(AIFXError):
    """The service could not be reached (after every retry)."""

    def __init__(self, url: str, detail: str, attempts: int = 1) -> None:
        super().__init__(f"cannot reach the AIFX service at {url} after {attempts} attempt(s): {detail}")
        self.url = url
        self.attempts = attempts


class AIFXTimeout(AIFXError, TimeoutError):
    """The service did not answer within the client's timeout."""

    def __init__(self, url: str, seconds: float, attempts: int = 1) -> None:
        super().__init__(
            f"the AIFX service at {url} did not answer within {seconds:g} s "
            f"({attempts} attempt(s)); raise the client's timeout (ML_API_TIMEOUT) or check the service"
        )
        self.url = url
        self.seconds = seconds
        self.attempts = attempts


class AIFXHTTPError(AIFXError):
    """The service answered with an error status; `message` is the envelope's `error`."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {message}")
        self.status = status
        self.message = message
        self.url = url


class AIFXRequestError(AIFXHTTPError):
    """A 4xx: the request is wrong (bad input, unknown version, missing admin token...); never retried."""


class AIFXServerError(AIFXHTTPError):
    """A 5xx that persisted through every retry."""


class AIFXResponseError(AIFXError):
    """A response the client cannot understand (not the expected JSON shape)."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"unexpected response from {url}: {detail}")
        self.url = url
