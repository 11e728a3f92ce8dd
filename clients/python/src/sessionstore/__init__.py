"""The Python client of SessionStore (sessionstore.v1.SessionStoreService).

    from sessionstore import SessionStoreClient, NotFound

    with SessionStoreClient("sessions.internal:50051", tls=True, token=token) as client:
        session = client.get("u1", "s1")

The generated messages are in sessionstore.v1.session_store_pb2 (Session,
TokenTransport, ...), the gRPC stub in sessionstore.v1.session_store_pb2_grpc.
"""

from sessionstore.client import DEFAULT_TIMEOUT, SessionStoreClient
from sessionstore.errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SessionStoreError,
    Unauthenticated,
    Unavailable,
    VersionMismatch,
    error_from_rpc,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ERROR_DOMAIN",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SessionStoreClient",
    "SessionStoreError",
    "Unauthenticated",
    "Unavailable",
    "VersionMismatch",
    "error_from_rpc",
]
