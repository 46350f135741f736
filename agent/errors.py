"""The agent's exception tree; the retry decision lives in the type, not at the call sites.

    AgentError
    ├── ConfigError                 bad or missing configuration (exit 2)
    ├── RetryableError              try again after a pause
    │   ├── ThrottledError          429 / AF429; carries retry_after
    │   ├── TransientApiError       5xx, reset, truncated or malformed body
    │   └── TokenRejected           401 on a token we thought valid: drop it, get a new one
    ├── FatalError                  retrying will not help; stop this stream and say why
    │   ├── AuthError               token could not be obtained (bad secret, unknown client)
    │   ├── ApiError                a documented, non-transient API error (code, status)
    │   │   └── LicenseError        the tenant lacks the licence the stream needs
    │   ├── TlsError                the server's certificate is not trusted (CA configuration)
    │   ├── CheckpointRegression    a cursor tried to move backwards
    │   └── IntegrityError          an archive object does not match its recorded hash
    │       └── DamagedSegment      a segment cannot be read whole (cut short, bad frame, half line)
    └── StoreError                  the store refused or failed a write (disk full, S3 down)
        └── ObjectNotFound / ObjectExists

Messages never contain secrets: callers pass ids, codes and URLs without query strings only, and
every message is scrubbed of registered secrets (`agent.logs.register_secret`) when the error is
made, because messages also quote what servers said, and a server may echo a token back.
"""

from __future__ import annotations

from agent.logs import scrub


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    def __init__(self, *args: object) -> None:
        # Messages end up in logs, the status file and CLI output: scrub them once, here.
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))


class ConfigError(AgentError):
    """The configuration is invalid; the message names the key."""


class RetryableError(AgentError):
    """A failure that a later attempt may not see."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ThrottledError(RetryableError):
    """The service asked us to slow down."""


class TransientApiError(RetryableError):
    """A server fault or a broken response."""


class TokenRejected(RetryableError):
    """The API refused our access token (expired or revoked early); a fresh token may work."""


class FatalError(AgentError):
    """Retrying the same request will not succeed."""


class AuthError(FatalError):
    """No token could be obtained; the message carries the AADSTS code, never the credential."""


class ApiError(FatalError):
    """A documented API error that is not transient."""

    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class LicenseError(ApiError):
    """The tenant's licence does not include this log (Graph 403 for non-premium tenants)."""


class TlsError(FatalError):
    """TLS verification failed: a configuration problem (CA bundle, inspecting proxy), not an outage."""


class CheckpointRegression(FatalError):
    """A checkpoint save would move a cursor backwards."""


class IntegrityError(FatalError):
    """Stored bytes do not match the hash recorded for them."""


class DamagedSegment(IntegrityError):
    """A segment (or its index) cannot be read whole: the message names the object.

    Reading part of a segment and carrying on would be a quiet short read (records lost with
    nothing said), so every reader stops on it and the operator restores the object.
    """


class StoreError(AgentError):
    """The store could not complete an operation; nothing was acknowledged."""


class ObjectNotFound(StoreError):
    """The key does not exist in the store."""


class ObjectExists(StoreError):
    """A create-only write found the key already present (segments are immutable)."""
