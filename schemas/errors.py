"""The project's one error tree.

::

    UpscaleError
     ├── RejectedInput             a client sent something we will not take (400)
     │    ├── PayloadTooLarge      body or upload over its cap (413)
     │    ├── IdempotencyConflict  same Idempotency-Key, different body (409)
     │    ├── MethodNotAllowed     a known path asked with a method it does not take (405)
     │    ├── BodyTimeout          the body did not arrive within its deadline (408)
     │    └── TooManyUploads       uploads at their concurrent cap; retry later (429)
     ├── ClientGone                the client disconnected before its body was read
     ├── InsufficientStorage       no room (or no permission) to write an upload (503, Retry-After)
     ├── RejectedPayload           a provider payload we cannot parse (dead letter)
     ├── NotAuthorized             missing or wrong API token (401)
     │    └── CallbackSourceRefused  a callback from an address not on the provider's list (403)
     ├── NotFound                  unknown job, bad callback token, unknown route (404)
     ├── ProviderError             a provider call did not give a usable answer
     │    ├── ProviderRejected     the provider refused the job; final (reason code)
     │    ├── ProviderThrottled    429: try again after ``retry_after_s``
     │    ├── ProviderUnavailable  5xx or no connection, the job was not created
     │    └── ProviderUncertain    the request left us and no answer came back
     ├── FetchError                a result could not be downloaded and stored
     │    ├── ForbiddenURL         scheme or address not allowed; final
     │    ├── ResultExpired        403/404/410 from the result host
     │    ├── ResultInvalid        not an image, too large, or a decompression bomb
     │    └── FetchTransient       network trouble or 5xx; retryable
     ├── StoreUnavailable          the database could not commit; retryable
     │    └── DatabaseLost         the database file was deleted or replaced under us,
     │                             or is new where the data directory says one was
     └── ProviderJobIdTaken        another job already holds that provider job id

Whether an error is worth retrying is the class attribute ``retryable``,
never a string match on the message.
"""

from __future__ import annotations


class UpscaleError(Exception):
    """Base of every error the project raises on purpose."""

    retryable: bool = False
    status_code: int = 500
    code: str = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class RejectedInput(UpscaleError):
    status_code = 400
    code = "invalid_request"


class PayloadTooLarge(RejectedInput):
    status_code = 413
    code = "payload_too_large"


class IdempotencyConflict(RejectedInput):
    status_code = 409
    code = "idempotency_conflict"


class MethodNotAllowed(RejectedInput):
    """The answer carries ``Allow`` with the methods the path does take."""

    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class BodyTimeout(RejectedInput):
    status_code = 408
    code = "request_timeout"


class TooManyUploads(RejectedInput):
    retryable = True
    status_code = 429
    code = "too_many_uploads"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClientGone(UpscaleError):
    """The client went away mid-request: nobody is left to answer, nothing went wrong here."""

    status_code = 499
    code = "client_disconnected"


class InsufficientStorage(UpscaleError):
    """An upload could not be written: the disk is full or not writable. Nothing is kept."""

    retryable = True
    status_code = 503
    code = "insufficient_storage"


class RejectedPayload(UpscaleError):
    """A provider payload (callback or answer) that does not parse."""

    status_code = 400
    code = "rejected_payload"


class NotAuthorized(UpscaleError):
    status_code = 401
    code = "unauthorized"


class CallbackSourceRefused(NotAuthorized):
    status_code = 403
    code = "forbidden_source"


class NotFound(UpscaleError):
    status_code = 404
    code = "not_found"


class ProviderError(UpscaleError):
    status_code = 502
    code = "provider_error"


class ProviderRejected(ProviderError):
    """The provider said no, and asking again will not change that."""

    code = "provider_rejected"

    def __init__(self, message: str, reason: str = "provider_failed") -> None:
        super().__init__(message)
        self.reason = reason


class ProviderThrottled(ProviderError):
    retryable = True
    code = "provider_throttled"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    """The provider could not take the request; it did not create a job."""

    retryable = True
    code = "provider_unavailable"


class ProviderUncertain(ProviderError):
    """The request was sent but no answer came: the job may exist and be billed."""

    code = "provider_uncertain"


class FetchError(UpscaleError):
    status_code = 502
    code = "fetch_error"
    reason = "result_invalid"


class ForbiddenURL(FetchError):
    code = "forbidden_url"
    reason = "result_forbidden"


class ResultExpired(FetchError):
    code = "result_expired"
    reason = "result_expired"


class ResultInvalid(FetchError):
    code = "result_invalid"
    reason = "result_invalid"


class FetchTransient(FetchError):
    retryable = True
    code = "fetch_transient"
    reason = "result_unavailable"


class StoreUnavailable(UpscaleError):
    retryable = True
    status_code = 503
    code = "store_unavailable"


class DatabaseLost(StoreUnavailable):
    """The SQLite file this process opened was deleted or replaced, or a new empty
    database would be made where the data directory says there was one before.
    Nothing more is acknowledged until an operator restores it or allows a new one."""

    code = "database_lost"


class ProviderJobIdTaken(UpscaleError):
    """A transition would give a job the provider job id another job already holds
    (``UNIQUE(provider, provider_job_id)``); nothing of it was written."""

    status_code = 409
    code = "provider_job_id_taken"
