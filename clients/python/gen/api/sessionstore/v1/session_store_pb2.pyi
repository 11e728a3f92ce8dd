from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EVENT_TYPE_DELETED: EventType
EVENT_TYPE_DELETED_BY_USER: EventType
EVENT_TYPE_EVICTED: EventType
EVENT_TYPE_REUSE_DETECTED: EventType
EVENT_TYPE_ROTATED: EventType
EVENT_TYPE_TOUCHED: EventType
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_UPSERTED: EventType
REFRESH_OUTCOME_ALREADY_ROTATED: RefreshOutcome
REFRESH_OUTCOME_ROTATED: RefreshOutcome
REFRESH_OUTCOME_UNSPECIFIED: RefreshOutcome
TOKEN_TRANSPORT_BEARER: TokenTransport
TOKEN_TRANSPORT_COOKIE: TokenTransport
TOKEN_TRANSPORT_UNSPECIFIED: TokenTransport

class DeleteByUserRequest(_message.Message):
    __slots__ = ["except_session_ids", "user_id"]
    EXCEPT_SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    except_session_ids: _containers.RepeatedScalarFieldContainer[str]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ..., except_session_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteByUserResponse(_message.Message):
    __slots__ = ["deleted_count"]
    DELETED_COUNT_FIELD_NUMBER: _ClassVar[int]
    deleted_count: int
    def __init__(self, deleted_count: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ["expected_version", "session_id", "user_id"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    session_id: str
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ["deleted"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ["session_id", "user_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ["session"]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class ListByUserRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "user_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    user_id: str
    def __init__(self, user_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListByUserResponse(_message.Message):
    __slots__ = ["next_page_token", "sessions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    def __init__(self, sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RefreshRequest(_message.Message):
    __slots__ = ["grace", "new_refresh_token_id", "presented_refresh_token_id", "session_id", "ttl", "user_id"]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    NEW_REFRESH_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    PRESENTED_REFRESH_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    grace: _duration_pb2.Duration
    new_refresh_token_id: str
    presented_refresh_token_id: str
    session_id: str
    ttl: _duration_pb2.Duration
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., presented_refresh_token_id: _Optional[str] = ..., new_refresh_token_id: _Optional[str] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., grace: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RefreshResponse(_message.Message):
    __slots__ = ["outcome", "session"]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    outcome: RefreshOutcome
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., outcome: _Optional[_Union[RefreshOutcome, str]] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ["created_at", "expires_at", "extra_payload", "id", "last_known_ip", "refresh_token_id", "refreshed_at", "storage_expires_at", "token_signature_transport", "user_id", "version"]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_KNOWN_IP_FIELD_NUMBER: _ClassVar[int]
    REFRESHED_AT_FIELD_NUMBER: _ClassVar[int]
    REFRESH_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    STORAGE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SIGNATURE_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    extra_payload: _struct_pb2.Struct
    id: str
    last_known_ip: str
    refresh_token_id: str
    refreshed_at: _timestamp_pb2.Timestamp
    storage_expires_at: _timestamp_pb2.Timestamp
    token_signature_transport: TokenTransport
    user_id: str
    version: int
    def __init__(self, id: _Optional[str] = ..., user_id: _Optional[str] = ..., refresh_token_id: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., refreshed_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_known_ip: _Optional[str] = ..., token_signature_transport: _Optional[_Union[TokenTransport, str]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., extra_payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ..., storage_expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ["event_id", "session_id", "time", "type", "user_id", "version"]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    session_id: str
    time: _timestamp_pb2.Timestamp
    type: EventType
    user_id: str
    version: int
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., version: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TouchRequest(_message.Message):
    __slots__ = ["session_id", "ttl", "user_id"]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    ttl: _duration_pb2.Duration
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TouchResponse(_message.Message):
    __slots__ = ["session"]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ["expected_version", "session", "ttl"]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    session: Session
    ttl: _duration_pb2.Duration
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ..., ttl: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ["session"]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: Session
    def __init__(self, session: _Optional[_Union[Session, _Mapping]] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ["after_event_id", "session_id", "user_id"]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    after_event_id: str
    session_id: str
    user_id: str
    def __init__(self, session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class WatchUserRequest(_message.Message):
    __slots__ = ["after_event_id", "user_id"]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    after_event_id: str
    user_id: str
    def __init__(self, user_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class TokenTransport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class RefreshOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
