"""Domain exceptions of the experiments package; an HTTP layer maps them to status codes."""

from __future__ import annotations


class ExperimentError(Exception):
    """Base class of every error this package raises on purpose."""

    http_status = 500


class NotFound(ExperimentError):
    """The experiment or prediction does not exist (HTTP 404)."""

    http_status = 404


class Conflict(ExperimentError):
    """The request contradicts the current state, e.g. another experiment is active (HTTP 409)."""

    http_status = 409


class KeyReused(Conflict):
    """An Idempotency-Key sent again with another request (HTTP 409)."""


class Invalid(ExperimentError):
    """The input is malformed or out of range (HTTP 422)."""

    http_status = 422


class SchemaMismatch(ExperimentError):
    """The database schema version is not the one this code knows how to use."""
