package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gomodule/redigo/redis"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionstorev1 "sessionstore/clients/go/gen/sessionstore/v1"
)

// keyPrefix is the service's default KEY_PREFIX, so that the peer and the
// service read and write the same keys.
const keyPrefix = "sessionstore"

// peer serves Get and Upsert over one Redis pool.
type peer struct {
	pool   *redis.Pool
	get    *redis.Script
	upsert *redis.Script
}

// serviceDesc serves sessionstore.v1.SessionStoreService's Get and Upsert
// on handlers that take the request's bytes and return the response's
// (see rawCodec): the service stores a session's bytes as the client sent
// them and splices stored bytes into responses, and the generated handlers
// would decode and encode whole messages instead. This protoc-gen-go-grpc
// leaves the generated descriptor unexported, so it cannot be copied with
// two handlers replaced; grpc-go answers every other method of the service
// UNIMPLEMENTED, as the generated Unimplemented server would.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: "sessionstore.v1.SessionStoreService",
	HandlerType: (*interface{})(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Get", Handler: unary((*peer).handleGet)},
		{MethodName: "Upsert", Handler: unary((*peer).handleUpsert)},
	},
	Metadata: "sessionstore/v1/session_store.proto",
}

// unary adapts a handler of request bytes to grpc-go's method handler
// signature (a type grpc-go 1.33 does not export).
func unary(handle func(*peer, context.Context, []byte) (frame, error)) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(srv interface{}, ctx context.Context, decode func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		var request frame
		if err := decode(&request); err != nil {
			return nil, err
		}
		return handle(srv.(*peer), ctx, request)
	}
}

// Status codes of lua/upsert.lua's reply.
const (
	upsertOK              = 0
	upsertNotFound        = 1
	upsertVersionMismatch = 2
	upsertAlreadyExists   = 3
	upsertExpiresAtPassed = 4
)

func (p *peer) handleGet(ctx context.Context, body []byte) (frame, error) {
	var request sessionstorev1.GetRequest
	if err := proto.Unmarshal(body, &request); err != nil {
		return nil, status.Error(codes.InvalidArgument, "request is not a valid GetRequest")
	}
	if err := checkID("session_id", request.SessionId); err != nil {
		return nil, err
	}
	if err := checkID("user_id", request.UserId); err != nil {
		return nil, err
	}
	reply, err := p.run(ctx, p.get, hashKey(request.UserId), request.SessionId)
	if err != nil {
		return nil, err
	}
	if reply == nil {
		return nil, status.Error(codes.NotFound, "session not found")
	}
	stored, ok := reply.([]byte)
	if !ok {
		return nil, internal()
	}
	record, ok := decodeRecord(stored)
	if !ok {
		return nil, internal()
	}
	return sessionResponse(record.data, record.version, record.storageExpiresAtMs), nil
}

func (p *peer) handleUpsert(ctx context.Context, body []byte) (frame, error) {
	var request sessionstorev1.UpsertRequest
	if err := proto.Unmarshal(body, &request); err != nil {
		return nil, status.Error(codes.InvalidArgument, "request is not a valid UpsertRequest")
	}
	session := request.Session
	if session == nil {
		return nil, invalid("session", "is required")
	}
	if err := checkID("session.id", session.Id); err != nil {
		return nil, err
	}
	if err := checkID("session.user_id", session.UserId); err != nil {
		return nil, err
	}
	for _, t := range []struct {
		field string
		value *timestamppb.Timestamp
	}{
		{"session.created_at", session.CreatedAt},
		{"session.refreshed_at", session.RefreshedAt},
		{"session.expires_at", session.ExpiresAt},
	} {
		if err := checkTimestamp(t.field, t.value); err != nil {
			return nil, err
		}
	}
	if payloadDepth(session.ExtraPayload) > maxPayloadDepth {
		return nil, invalid("session.extra_payload", "must nest at most 32 levels deep")
	}
	data, payloadBytes, err := storedSession(body, session)
	if err != nil {
		return nil, internal()
	}
	if payloadBytes > maxPayloadBytes {
		return nil, invalid("session.extra_payload", "must encode to at most 65536 bytes")
	}
	ttlMs, err := checkTTL("ttl", request.Ttl)
	if err != nil {
		return nil, err
	}
	var expiresAtMs int64
	if session.ExpiresAt != nil {
		expiresAtMs = session.ExpiresAt.Seconds*1000 + int64(session.ExpiresAt.Nanos/1_000_000)
	}
	expectedVersion := ""
	if request.ExpectedVersion != nil {
		expectedVersion = strconv.FormatUint(*request.ExpectedVersion, 10)
	}
	keys := userKeys(session.UserId)
	result, err := p.run(ctx, p.upsert,
		keys+"h", keys+"e", keys+"l", keys+"x",
		session.Id, data, ttlMs, expiresAtMs, expectedVersion, 0, refreshTokenDigest(session.RefreshTokenId))
	if err != nil {
		return nil, err
	}
	reply, err := redis.Values(result, nil)
	if err != nil {
		return nil, internal()
	}
	var code int
	if _, err := redis.Scan(reply, &code); err != nil {
		return nil, internal()
	}
	switch code {
	case upsertOK:
		var version uint64
		var storageExpiresAtMs int64
		if _, err := redis.Scan(reply[1:], &version, &storageExpiresAtMs); err != nil {
			return nil, internal()
		}
		return sessionResponse(data, version, storageExpiresAtMs), nil
	case upsertNotFound:
		return nil, status.Error(codes.NotFound, "session not found")
	case upsertVersionMismatch:
		return nil, status.Error(codes.Aborted, "stored version differs from expected_version")
	case upsertAlreadyExists:
		return nil, status.Error(codes.AlreadyExists, "session already exists")
	case upsertExpiresAtPassed:
		return nil, invalid("session.expires_at", "must be in the future")
	}
	return nil, internal()
}

// run runs a script by EVALSHA (EVAL after a script cache flush) on a
// pooled connection. Failing to reach Redis, and Redis's "not now"
// replies, are UNAVAILABLE; any other failure INTERNAL.
func (p *peer) run(ctx context.Context, script *redis.Script, keysAndArgs ...interface{}) (interface{}, error) {
	conn, err := p.pool.GetContext(ctx)
	if err != nil {
		return nil, unavailable()
	}
	defer conn.Close()
	reply, err := script.Do(conn, keysAndArgs...)
	if err == nil {
		return reply, nil
	}
	// Like the service: Redis's replies are failures of the call, except
	// the transient ones; every other error (connection, timeout, protocol)
	// is about reaching Redis.
	var replyError redis.Error
	if errors.As(err, &replyError) && !transientReply(string(replyError)) {
		return nil, internal()
	}
	return nil, unavailable()
}

// transientReply says whether a Redis error reply means "not now" (the
// service's TRANSIENT_REPLY).
func transientReply(message string) bool {
	for _, prefix := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "OOM", "MISCONF"} {
		if strings.HasPrefix(message, prefix) {
			return true
		}
	}
	return false
}

func unavailable() error {
	return status.Error(codes.Unavailable, "session storage is unavailable - retry later")
}

func internal() error {
	return status.Error(codes.Internal, "internal error")
}

// userKeys is the common part of one user's key names (redis-keys.ts):
// "<prefix>:{<user id, escaped>}:", to which h, e, l and x are appended.
func userKeys(userID string) string {
	var b strings.Builder
	b.Grow(len(keyPrefix) + len(userID) + 4)
	b.WriteString(keyPrefix)
	b.WriteString(":{")
	for i := 0; i < len(userID); i++ {
		switch c := userID[i]; c {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("}:")
	return b.String()
}

func hashKey(userID string) string {
	return userKeys(userID) + "h"
}

// refreshTokenDigest is the service's refreshTokenDigest: SHA-256 of the
// token id, truncated to 128 bits, base64url; "" for no token.
func refreshTokenDigest(tokenID string) string {
	if tokenID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(tokenID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// The checks below are the service's (src/service/validate.ts), with its
// status codes and messages, but without its google.rpc.ErrorInfo details.

const maxIDBytes = 128

func invalid(field, problem string) error {
	return status.Error(codes.InvalidArgument, field+" "+problem)
}

// checkID: 1 to 128 bytes of UTF-8 without control characters (Unicode
// category Cc, which is what unicode.IsControl tests).
func checkID(field, value string) error {
	if value == "" {
		return invalid(field, "is required")
	}
	if len(value) > maxIDBytes || !utf8.ValidString(value) {
		return invalid(field, "must be at most 128 bytes of valid UTF-8")
	}
	for _, r := range value {
		if unicode.IsControl(r) {
			return invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// The largest Duration seconds protobuf allows, and the Timestamp range
// (0001-01-01 to 9999-12-31).
const (
	maxDurationSeconds  = 315_576_000_000
	minTimestampSeconds = -62_135_596_800
	maxTimestampSeconds = 253_402_300_799
)

// checkTTL returns a positive ttl of at most maxTTLSeconds in whole
// milliseconds, a fraction of one rounded up.
func checkTTL(field string, ttl *durationpb.Duration) (int64, error) {
	if ttl == nil {
		return 0, invalid(field, "is required")
	}
	seconds, nanos := ttl.Seconds, ttl.Nanos
	if seconds > maxDurationSeconds || seconds < -maxDurationSeconds ||
		nanos <= -1e9 || nanos >= 1e9 || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0) {
		return 0, invalid(field, "is not a valid duration")
	}
	if seconds < 0 || (seconds == 0 && nanos <= 0) {
		return 0, invalid(field, "must be positive")
	}
	if seconds > maxTTLSeconds || (seconds == maxTTLSeconds && nanos > 0) {
		return 0, invalid(field, "must be at most "+strconv.Itoa(maxTTLSeconds)+" seconds")
	}
	return seconds*1000 + int64((nanos+999_999)/1_000_000), nil
}

func checkTimestamp(field string, value *timestamppb.Timestamp) error {
	if value == nil {
		return nil
	}
	if value.Seconds < minTimestampSeconds || value.Seconds > maxTimestampSeconds ||
		value.Nanos < 0 || value.Nanos >= 1e9 {
		return invalid(field, "is not a valid timestamp")
	}
	return nil
}

// maxPayloadDepth is the service's MAX_PAYLOAD_DEPTH, in protobuf message
// levels: the Struct is level 1, each Value one more, each Struct or
// ListValue inside a Value one more.
const maxPayloadDepth = 32

// payloadDepth is how deep extra_payload nests, counted as the service
// counts it, looking no further than one level past the limit.
func payloadDepth(payload *structpb.Struct) int {
	if payload == nil {
		return 0
	}
	deepest := 1
	var visit func(value *structpb.Value, depth int)
	visit = func(value *structpb.Value, depth int) {
		if depth > deepest {
			deepest = depth
		}
		if depth > maxPayloadDepth {
			return
		}
		switch kind := value.Kind.(type) {
		case *structpb.Value_StructValue:
			for _, member := range kind.StructValue.GetFields() {
				visit(member, depth+2)
			}
			if depth+1 > deepest {
				deepest = depth + 1
			}
		case *structpb.Value_ListValue:
			for _, item := range kind.ListValue.GetValues() {
				visit(item, depth+2)
			}
			if depth+1 > deepest {
				deepest = depth + 1
			}
		}
	}
	for _, member := range payload.Fields {
		visit(member, 2)
	}
	return deepest
}
