"""Typed exceptions for SessionStore's status codes, with the ErrorInfo reason.

Every error the server returns carries one google.rpc.ErrorInfo (domain
"sessionstore") in the grpc-status-details-bin trailer: `reason` says what
went wrong in a form programs can branch on (SESSION_NOT_FOUND,
VERSION_MISMATCH, REFRESH_TOKEN_REUSED...), `metadata` names the field or
limit at fault. The README lists the reasons.
"""

from __future__ import annotations

from typing import Mapping, Optional

import grpc

from sessionstore._rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "sessionstore"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
_DETAILS_KEY = "grpc-status-details-bin"


class SessionStoreError(Exception):
    """A call failed: its status code, message, and ErrorInfo reason and metadata."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}" + (f" ({reason})" if reason else ""))
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(SessionStoreError):
    """Malformed input (INVALID_ARGUMENT): nothing was changed."""


class NotFound(SessionStoreError):
    """No such session (NOT_FOUND)."""


class AlreadyExists(SessionStoreError):
    """An insert-only write found the session (ALREADY_EXISTS)."""


class VersionMismatch(SessionStoreError):
    """A conditional write or delete found another version (ABORTED)."""


class PermissionDenied(SessionStoreError):
    """The caller's scope does not allow it, or a refresh token was reused (PERMISSION_DENIED)."""


class Unauthenticated(SessionStoreError):
    """No valid token (UNAUTHENTICATED)."""


class ResourceExhausted(SessionStoreError):
    """Over a size or rate limit, or a watcher too slow (RESOURCE_EXHAUSTED)."""


class FailedPrecondition(SessionStoreError):
    """The session or the server cannot do it in its state (FAILED_PRECONDITION)."""


class Unavailable(SessionStoreError):
    """The server or its storage cannot be reached now (UNAVAILABLE): retry later.

    With reason WRITE_NOT_REPLICATED the write may have been applied: read
    the session again, or retry with expected_version, never blindly.
    """


class DeadlineExceeded(SessionStoreError):
    """The call's deadline passed (DEADLINE_EXCEEDED)."""


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: VersionMismatch,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_from_rpc(error: grpc.RpcError) -> SessionStoreError:
    """The typed exception for a failed call, with the reason its status details carry."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    reason, metadata = None, {}
    trailers = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    for key, value in trailers or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.type_url != _ERROR_INFO_TYPE:
                continue
            info = error_details_pb2.ErrorInfo.FromString(detail.value)
            if info.domain == ERROR_DOMAIN:
                reason, metadata = info.reason, dict(info.metadata)
    return _BY_CODE.get(code, SessionStoreError)(code, message or "", reason, metadata)
