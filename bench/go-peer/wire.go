package main

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sessionstorev1 "sessionstore/clients/go/gen/sessionstore/v1"
)

// frame is a message in its protobuf encoding, as it travels.
type frame []byte

// rawCodec hands requests to the handlers as their bytes and sends the
// bytes the handlers return, so that each handler decodes and encodes
// exactly what the service does.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	message, ok := v.(frame)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot send a %T", v)
	}
	return message, nil
}

// Unmarshal keeps data itself: grpc-go allocates each received message
// anew and does not touch it after decoding.
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	message, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rawCodec: cannot receive a %T", v)
	}
	*message = data
	return nil
}

func (rawCodec) String() string { return "proto" }

// Field numbers of Session (proto/sessionstore/v1/session_store.proto).
const (
	sessionExtraPayload     = 9
	sessionVersion          = 10
	sessionStorageExpiresAt = 11
)

// record is a stored session: its metadata and its protobuf bytes.
type record struct {
	version            uint64
	storageExpiresAtMs int64
	data               []byte
}

// decodeRecord reads a record as redis-record.ts writes it: format 2,
// "2|<version>|<storage expiry ms>|<expires_at ms>|<digest>|<digest>|<ms>|<tail>|<data>",
// or format 1, "1|<version>|<storage expiry ms>|<expires_at ms>|<data>".
// Only the version and the storage expiry are needed to answer.
func decodeRecord(stored []byte) (record, bool) {
	var fields int
	switch {
	case bytes.HasPrefix(stored, []byte("2|")):
		fields = 8
	case bytes.HasPrefix(stored, []byte("1|")):
		fields = 4
	default:
		return record{}, false
	}
	header := make([][]byte, 0, fields)
	rest := stored
	for len(header) < fields {
		end := bytes.IndexByte(rest, '|')
		if end < 0 {
			return record{}, false
		}
		header = append(header, rest[:end])
		rest = rest[end+1:]
	}
	version, ok := decimal(header[1])
	if !ok {
		return record{}, false
	}
	storageExpiresAt, ok := decimal(header[2])
	if !ok {
		return record{}, false
	}
	if _, ok := decimal(header[3]); !ok {
		return record{}, false
	}
	return record{version: version, storageExpiresAtMs: int64(storageExpiresAt), data: rest}, true
}

// decimal parses a non-empty run of ASCII digits.
func decimal(digits []byte) (uint64, bool) {
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// sessionResponse is the encoding of a GetResponse or UpsertResponse
// holding one stored session, as the service's encodeSessionsResponse
// builds it: field 1 is the session's stored bytes as they are, followed by
// its version (field 10, when not 0) and storage_expires_at (field 11,
// always present, its seconds and nanos when not 0).
func sessionResponse(data []byte, version uint64, storageExpiresAtMs int64) frame {
	seconds := uint64(storageExpiresAtMs / 1000)
	nanos := uint64(storageExpiresAtMs%1000) * 1_000_000
	timestampSize := 0
	if seconds > 0 {
		timestampSize += 1 + protowire.SizeVarint(seconds)
	}
	if nanos > 0 {
		timestampSize += 1 + protowire.SizeVarint(nanos)
	}
	sessionSize := len(data) + 1 + protowire.SizeVarint(uint64(timestampSize)) + timestampSize
	if version > 0 {
		sessionSize += 1 + protowire.SizeVarint(version)
	}
	out := make([]byte, 0, 1+protowire.SizeVarint(uint64(sessionSize))+sessionSize)
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(sessionSize))
	out = append(out, data...)
	if version > 0 {
		out = protowire.AppendTag(out, sessionVersion, protowire.VarintType)
		out = protowire.AppendVarint(out, version)
	}
	out = protowire.AppendTag(out, sessionStorageExpiresAt, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(timestampSize))
	if seconds > 0 {
		out = protowire.AppendTag(out, 1, protowire.VarintType)
		out = protowire.AppendVarint(out, seconds)
	}
	if nanos > 0 {
		out = protowire.AppendTag(out, 2, protowire.VarintType)
		out = protowire.AppendVarint(out, nanos)
	}
	return out
}

// storedSession is what an Upsert stores, as the service's storedSession
// takes it: the session as the client encoded it (field 1 of the request)
// without the output-only fields 10 and 11, and the size of its
// extra_payload. Only when field 1 occurs more than once (protobuf merges
// the occurrences) is the decoded session encoded again.
func storedSession(request []byte, session *sessionstorev1.Session) ([]byte, int, error) {
	encoded, occurrences, err := onlyField(request, 1)
	if err != nil {
		return nil, 0, err
	}
	if occurrences != 1 {
		copied := proto.Clone(session).(*sessionstorev1.Session)
		copied.Version = 0
		copied.StorageExpiresAt = nil
		if encoded, err = proto.Marshal(copied); err != nil {
			return nil, 0, err
		}
	}
	payloadBytes := 0
	// nil until a field to leave out is met: usually there is none, and
	// the request's bytes are stored as they are, uncopied.
	var kept []byte
	for rest := encoded; len(rest) > 0; {
		number, kind, keyLength := protowire.ConsumeTag(rest)
		if keyLength < 0 {
			return nil, 0, protowire.ParseError(keyLength)
		}
		valueLength := protowire.ConsumeFieldValue(number, kind, rest[keyLength:])
		if valueLength < 0 {
			return nil, 0, protowire.ParseError(valueLength)
		}
		field := rest[:keyLength+valueLength]
		rest = rest[len(field):]
		switch number {
		case sessionExtraPayload:
			_, lengthSize := protowire.ConsumeVarint(field[keyLength:])
			payloadBytes += valueLength - lengthSize
		case sessionVersion, sessionStorageExpiresAt:
			if kept == nil {
				start := len(encoded) - len(rest) - len(field)
				kept = append(make([]byte, 0, len(encoded)), encoded[:start]...)
			}
			continue
		}
		if kept != nil {
			kept = append(kept, field...)
		}
	}
	if kept == nil {
		return encoded, payloadBytes, nil
	}
	return kept, payloadBytes, nil
}

// onlyField returns the value of length-delimited field `number` of an
// encoded message (its last occurrence) and how many times it occurs.
func onlyField(message []byte, number protowire.Number) ([]byte, int, error) {
	var value []byte
	occurrences := 0
	for len(message) > 0 {
		n, kind, keyLength := protowire.ConsumeTag(message)
		if keyLength < 0 {
			return nil, 0, protowire.ParseError(keyLength)
		}
		valueLength := protowire.ConsumeFieldValue(n, kind, message[keyLength:])
		if valueLength < 0 {
			return nil, 0, protowire.ParseError(valueLength)
		}
		if n == number {
			if kind != protowire.BytesType {
				return nil, 0, errors.New("field 1 is not length-delimited")
			}
			v, _ := protowire.ConsumeBytes(message[keyLength:])
			value = v
			occurrences++
		}
		message = message[keyLength+valueLength:]
	}
	return value, occurrences, nil
}
