import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Session, SessionSchema } from "../../gen/sessionstore/v1/session_store_pb.js";
import type { StoredSession } from "../store/session-store.js";

/**
 * Sessions are stored as their protobuf binary encoding, without the two
 * output-only fields the store manages itself (version, storage_expires_at):
 * decoding protobuf can only ever produce a Session, never run code or pick
 * a type from the data.
 */
export function encodeSession(session: Session): Uint8Array {
  const { version, storageExpiresAt } = session;
  // Cleared in place rather than copied: this runs on every Upsert.
  session.version = 0n;
  session.storageExpiresAt = undefined;
  try {
    return toBinary(SessionSchema, session);
  } finally {
    session.version = version;
    session.storageExpiresAt = storageExpiresAt;
  }
}

/** The Session as clients see it: stored fields plus the store's metadata. */
export function decodeSession(stored: StoredSession): Session {
  const session = fromBinary(SessionSchema, stored.data);
  session.version = stored.version;
  session.storageExpiresAt = timestampFromMs(stored.storageExpiresAtMs);
  return session;
}

// Protobuf wire format: a field's key is (number << 3 | wire type).
const LENGTH_DELIMITED = 2;
const VARINT = 0;
const SESSION_VERSION_KEY = (10 << 3) | VARINT;
const SESSION_STORAGE_EXPIRES_AT_KEY = (11 << 3) | LENGTH_DELIMITED;
const TIMESTAMP_SECONDS_KEY = (1 << 3) | VARINT;
const TIMESTAMP_NANOS_KEY = (2 << 3) | VARINT;

/**
 * The binary encoding of a response whose field 1 is a Session (GetResponse,
 * UpsertResponse, TouchResponse) or repeated Sessions (ListByUserResponse),
 * optionally followed by a string field 2 (next_page_token), built without
 * decoding the stored sessions: each one's stored bytes are copied as they
 * are and its version and storage_expires_at appended as fields 10 and 11.
 * The stored bytes never contain those two fields (encodeSession drops
 * them), so the result is exactly what encoding the decoded messages would
 * give, in a different field order, which protobuf parsers accept.
 */
export function encodeSessionsResponse(
  sessions: readonly StoredSession[],
  field2 = "",
): Uint8Array {
  const parts = sessions.map(sessionTail);
  const token = Buffer.from(field2, "utf8");
  let size = token.length > 0 ? 1 + varintSize(token.length) + token.length : 0;
  sessions.forEach((stored, i) => {
    const inner = stored.data.byteLength + (parts[i] as Uint8Array).byteLength;
    size += 1 + varintSize(inner) + inner;
  });
  const out = new Uint8Array(size);
  let pos = 0;
  sessions.forEach((stored, i) => {
    const tail = parts[i] as Uint8Array;
    out[pos++] = (1 << 3) | LENGTH_DELIMITED;
    pos = writeVarint(out, pos, stored.data.byteLength + tail.byteLength);
    out.set(stored.data, pos);
    pos += stored.data.byteLength;
    out.set(tail, pos);
    pos += tail.byteLength;
  });
  if (token.length > 0) {
    out[pos++] = (2 << 3) | LENGTH_DELIMITED;
    pos = writeVarint(out, pos, token.length);
    out.set(token, pos);
  }
  return out;
}

/**
 * The binary encoding of a RefreshResponse: the session as
 * encodeSessionsResponse writes it, then field 2 (outcome, a varint).
 */
export function encodeRefreshResponse(stored: StoredSession, outcome: number): Uint8Array {
  const session = encodeSessionsResponse([stored]);
  const out = new Uint8Array(session.byteLength + 1 + varintSize(outcome));
  out.set(session);
  out[session.byteLength] = (2 << 3) | VARINT;
  writeVarint(out, session.byteLength + 1, outcome);
  return out;
}

/** Fields 10 (version) and 11 (storage_expires_at) of a stored session. */
function sessionTail(stored: StoredSession): Uint8Array {
  const seconds = Math.floor(stored.storageExpiresAtMs / 1000);
  const nanos = (stored.storageExpiresAtMs % 1000) * 1_000_000;
  const timestamp =
    (seconds > 0 ? 1 + varintSize(seconds) : 0) + (nanos > 0 ? 1 + varintSize(nanos) : 0);
  const version = Number(stored.version);
  const out = new Uint8Array(
    (version > 0 ? 1 + varintSize(version) : 0) + 1 + varintSize(timestamp) + timestamp,
  );
  let pos = 0;
  if (version > 0) {
    out[pos++] = SESSION_VERSION_KEY;
    pos = writeVarint(out, pos, version);
  }
  out[pos++] = SESSION_STORAGE_EXPIRES_AT_KEY;
  pos = writeVarint(out, pos, timestamp);
  if (seconds > 0) {
    out[pos++] = TIMESTAMP_SECONDS_KEY;
    pos = writeVarint(out, pos, seconds);
  }
  if (nanos > 0) {
    out[pos++] = TIMESTAMP_NANOS_KEY;
    writeVarint(out, pos, nanos);
  }
  return out;
}

/**
 * Calls `visit` with each top-level field of an encoded message, in wire
 * order: its number, where its key starts, where its value starts (after the
 * length, for length-delimited fields) and where it ends. Reads no further
 * than the message and decodes nothing.
 */
function visitFields(
  message: Uint8Array,
  visit: (number: number, start: number, valueStart: number, end: number) => void,
): void {
  let pos = 0;
  while (pos < message.length) {
    const start = pos;
    const [key, afterKey] = readVarint(message, pos);
    const wireType = key & 7;
    let valueStart = afterKey;
    if (wireType === VARINT) {
      pos = readVarint(message, afterKey)[1];
    } else if (wireType === LENGTH_DELIMITED) {
      const [length, afterLength] = readVarint(message, afterKey);
      valueStart = afterLength;
      pos = afterLength + length;
    } else if (wireType === 1) {
      pos = afterKey + 8;
    } else if (wireType === 5) {
      pos = afterKey + 4;
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
    if (pos > message.length) throw new Error("truncated field");
    visit(Math.floor(key / 8), start, valueStart, pos);
  }
}

/**
 * The size of top-level length-delimited field `number` in an encoded
 * message (all occurrences together), or 0 when absent.
 */
export function encodedFieldSize(message: Uint8Array, number: number): number {
  let size = 0;
  visitFields(message, (n, _start, valueStart, end) => {
    if (n === number) size += end - valueStart;
  });
  return size;
}

/** Field number of Session.extra_payload. */
const EXTRA_PAYLOAD_FIELD = 9;

/** A session's stored bytes, and the size of its extra_payload within them. */
export interface StoredSessionBytes {
  readonly data: Uint8Array;
  readonly payloadBytes: number;
}

/**
 * The bytes an Upsert stores for `session`: the session as the client
 * encoded it when the request's own bytes are at hand (see
 * storedSessionFromUpsertRequest), else the decoded message encoded again.
 */
export function storedSession(
  session: Session,
  encodedRequest: Uint8Array | undefined,
): StoredSessionBytes {
  const fromRequest = encodedRequest && storedSessionFromUpsertRequest(encodedRequest);
  if (fromRequest) return fromRequest;
  const data = encodeSession(session);
  return { data, payloadBytes: encodedFieldSize(data, EXTRA_PAYLOAD_FIELD) };
}

/**
 * The stored form of the session in an encoded UpsertRequest, taken from the
 * request's own bytes instead of encoding the decoded message again: field 1
 * with the output-only fields 10 and 11 removed, measured in the same pass.
 * Only valid for bytes that already decoded as an UpsertRequest (so every
 * string in them is valid UTF-8). Returns undefined when field 1 is absent
 * or occurs more than once (protobuf merges the occurrences; the caller
 * then encodes the decoded message).
 */
export function storedSessionFromUpsertRequest(
  request: Uint8Array,
): StoredSessionBytes | undefined {
  let occurrences = 0;
  let session = request.subarray(0, 0);
  visitFields(request, (n, _start, valueStart, end) => {
    if (n !== 1) return;
    occurrences++;
    session = request.subarray(valueStart, end);
  });
  if (occurrences !== 1) return undefined;
  const kept: [number, number][] = [];
  let keptBytes = 0;
  let payloadBytes = 0;
  visitFields(session, (n, start, valueStart, end) => {
    if (n === 10 || n === 11) return;
    if (n === EXTRA_PAYLOAD_FIELD) payloadBytes += end - valueStart;
    kept.push([start, end]);
    keptBytes += end - start;
  });
  if (keptBytes === session.length) return { data: session, payloadBytes };
  const out = new Uint8Array(keptBytes);
  let pos = 0;
  for (const [start, end] of kept) {
    out.set(session.subarray(start, end), pos);
    pos += end - start;
  }
  return { data: out, payloadBytes };
}

function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Uint8Array, pos: number, value: number): number {
  while (value >= 128) {
    out[pos++] = (value % 128) | 128;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

function readVarint(bytes: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let factor = 1;
  for (;;) {
    if (pos >= bytes.length) throw new Error("truncated varint");
    const byte = bytes[pos++] as number;
    value += (byte & 127) * factor;
    if (byte < 128) return [value, pos];
    factor *= 128;
  }
}
