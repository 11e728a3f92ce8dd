"""SessionStoreClient: the SessionStore API with deadlines, TLS, a token and typed errors."""

from __future__ import annotations

import collections
from datetime import timedelta
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import grpc
from google.protobuf import duration_pb2

from sessionstore.errors import error_from_rpc
from sessionstore.v1 import session_store_pb2 as pb
from sessionstore.v1 import session_store_pb2_grpc as pb_grpc

Seconds = Union[float, timedelta]

# A call with no deadline waits forever on a stuck server, which a session
# check must never do: every call gets one.
DEFAULT_TIMEOUT = 5.0


def _duration(value: Seconds) -> duration_pb2.Duration:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(round(seconds * 1000))
    return duration


def _seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """A call's details with metadata added; grpc's own are read-only."""


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <token>` with every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), self._header],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)


class SessionStoreClient:
    """A client of sessionstore.v1.SessionStoreService over one gRPC channel.

    `target` is "host:port". TLS: `tls=True` verifies the server against the
    system's CAs, `root_certificates` (PEM bytes) against a private CA;
    `certificate_chain` and `private_key` add a client certificate (mutual
    TLS). `token` is sent as a bearer token on every call; give it only over
    TLS beyond a trusted network. Every call has a deadline: `timeout`
    seconds unless the call passes its own. Failures raise the
    SessionStoreError subclass of their status code, carrying the
    ErrorInfo reason (see sessionstore.errors).
    """

    def __init__(
        self,
        target: str,
        *,
        tls: bool = False,
        root_certificates: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        token: Optional[str] = None,
        timeout: Seconds = DEFAULT_TIMEOUT,
        options: Sequence[Tuple[str, object]] = (),
    ) -> None:
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key go together: set both, or neither")
        secure = tls or root_certificates is not None or certificate_chain is not None
        if secure:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            channel = grpc.secure_channel(target, credentials, options=list(options))
        else:
            channel = grpc.insecure_channel(target, options=list(options))
        self._channel = channel
        if token is not None:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self._stub = pb_grpc.SessionStoreServiceStub(channel)
        self._timeout = _seconds(timeout)

    def __enter__(self) -> "SessionStoreClient":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def _call(self, method, request, timeout: Optional[Seconds]):
        try:
            return method(request, timeout=self._timeout if timeout is None else _seconds(timeout))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def get(self, user_id: str, session_id: str, *, timeout: Optional[Seconds] = None) -> pb.Session:
        """The session; NotFound when there is none (or it expired)."""
        request = pb.GetRequest(user_id=user_id, session_id=session_id)
        return self._call(self._stub.Get, request, timeout).session

    def upsert(
        self,
        session: pb.Session,
        ttl: Seconds,
        *,
        expected_version: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> pb.Session:
        """Stores the session for `ttl`; expected_version 0 inserts only, N writes over version N."""
        request = pb.UpsertRequest(session=session, ttl=_duration(ttl))
        if expected_version is not None:
            request.expected_version = expected_version
        return self._call(self._stub.Upsert, request, timeout).session

    def touch(
        self, user_id: str, session_id: str, ttl: Seconds, *, timeout: Optional[Seconds] = None
    ) -> pb.Session:
        """Keeps the session for `ttl` from now, without changing it."""
        request = pb.TouchRequest(user_id=user_id, session_id=session_id, ttl=_duration(ttl))
        return self._call(self._stub.Touch, request, timeout).session

    def delete(
        self,
        user_id: str,
        session_id: str,
        *,
        expected_version: Optional[int] = None,
        timeout: Optional[Seconds] = None,
    ) -> bool:
        """Deletes the session; False when there was none."""
        request = pb.DeleteRequest(user_id=user_id, session_id=session_id)
        if expected_version is not None:
            request.expected_version = expected_version
        return self._call(self._stub.Delete, request, timeout).deleted

    def list_page(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: Optional[Seconds] = None,
    ) -> Tuple[Sequence[pb.Session], str]:
        """One page of the user's sessions and the token of the next ("" on the last)."""
        request = pb.ListByUserRequest(user_id=user_id, page_size=page_size, page_token=page_token)
        response = self._call(self._stub.ListByUser, request, timeout)
        return list(response.sessions), response.next_page_token

    def list_sessions(
        self, user_id: str, *, page_size: int = 0, timeout: Optional[Seconds] = None
    ) -> Iterator[pb.Session]:
        """Every session of the user, page after page, ordered by id."""
        token = ""
        while True:
            sessions, token = self.list_page(
                user_id, page_size=page_size, page_token=token, timeout=timeout
            )
            yield from sessions
            if token == "":
                return

    def delete_by_user(
        self,
        user_id: str,
        *,
        except_session_ids: Iterable[str] = (),
        timeout: Optional[Seconds] = None,
    ) -> int:
        """Deletes the user's sessions but those listed; returns how many were deleted."""
        request = pb.DeleteByUserRequest(user_id=user_id, except_session_ids=list(except_session_ids))
        return self._call(self._stub.DeleteByUser, request, timeout).deleted_count

    def refresh(
        self,
        user_id: str,
        session_id: str,
        presented_refresh_token_id: str,
        new_refresh_token_id: str,
        ttl: Seconds,
        *,
        grace: Optional[Seconds] = None,
        timeout: Optional[Seconds] = None,
    ) -> Tuple[pb.Session, bool]:
        """Rotates the refresh token: (session, True) when this call rotated it,
        (session, False) when another call had within the grace. PermissionDenied
        with reason REFRESH_TOKEN_REUSED on reuse (the session is then revoked)."""
        request = pb.RefreshRequest(
            user_id=user_id,
            session_id=session_id,
            presented_refresh_token_id=presented_refresh_token_id,
            new_refresh_token_id=new_refresh_token_id,
            ttl=_duration(ttl),
        )
        if grace is not None:
            request.grace.CopyFrom(_duration(grace))
        response = self._call(self._stub.Refresh, request, timeout)
        return response.session, response.outcome == pb.REFRESH_OUTCOME_ROTATED
