import { isUtf8 } from "node:buffer";
import { clone, createFileRegistry, type DescMessage, fromBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  file_google_protobuf_duration,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
} from "@bufbuild/protobuf/wkt";
import {
  file_sessionstore_v1_session_store,
  type UpsertRequest,
  UpsertRequestSchema,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { MAX_PAYLOAD_DEPTH } from "./validate.js";

/**
 * UpsertRequest as it is on the wire, but with Session.extra_payload read
 * as bytes: decoding it builds every message of the request but the
 * payload's Struct, whose Values (an object per member, per list item and
 * per nested level) were most of an Upsert's decoding CPU and garbage.
 */
const UPSERT_WITH_RAW_PAYLOAD: DescMessage = (() => {
  // A copy: the generated descriptor is the one reflection serves.
  const file = clone(FileDescriptorProtoSchema, file_sessionstore_v1_session_store.proto);
  const session = file.messageType.find((message) => message.name === "Session");
  const payload = session?.field.find((field) => field.name === "extra_payload");
  if (!payload) throw new Error("the Session message has no extra_payload field");
  payload.type = FieldDescriptorProto_Type.BYTES;
  payload.typeName = "";
  const dependencies = [
    file_google_protobuf_struct,
    file_google_protobuf_timestamp,
    file_google_protobuf_duration,
  ];
  const registry = createFileRegistry(file, (name) =>
    dependencies.find((dependency) => dependency.proto.name === name),
  );
  const message = registry.getMessage(UpsertRequestSchema.typeName);
  if (!message) throw new Error("no UpsertRequest in the session store's descriptor");
  return message;
})();

const LENGTH_DELIMITED = 2;
const VARINT = 0;
const I64 = 1;
/** Field numbers: UpsertRequest.session, Session.extra_payload. */
const SESSION_FIELD = 1;
const EXTRA_PAYLOAD_FIELD = 9;

/** Where a field's value starts and ends within the message being read. */
interface Span {
  start: number;
  end: number;
}

/**
 * An UpsertRequest decoded from its protobuf binary encoding, for a
 * handler that has the encoding too (see storedSessionFromUpsertRequest,
 * which stores the session's own bytes, payload included): when the
 * request holds one session with at most one extra_payload, and that
 * payload is a plain Struct (see plainStructDepth) no deeper than
 * MAX_PAYLOAD_DEPTH, it is checked here on its bytes and the decoded
 * session comes without it (extraPayload undefined), as nothing but the
 * depth check would read it. Any other request, including every one that
 * does not decode, is decoded whole by fromBinary, so what is accepted and
 * how a request is refused stay exactly fromBinary's.
 */
export function decodeUpsertRequest(bytes: Uint8Array): UpsertRequest {
  const span: Span = { start: 0, end: bytes.length };
  if (
    onlyField(bytes, span, SESSION_FIELD) === FOUND &&
    onlyField(bytes, span, EXTRA_PAYLOAD_FIELD) !== MALFORMED &&
    (span.start === span.end || plainStructDepth(bytes, span.start, span.end, 1) > 0)
  ) {
    let request: UpsertRequest | undefined;
    try {
      request = fromBinary(UPSERT_WITH_RAW_PAYLOAD, bytes) as unknown as UpsertRequest;
    } catch {
      // fromBinary below says how.
    }
    if (request?.session) {
      request.session.extraPayload = undefined;
      return request;
    }
  }
  return fromBinary(UpsertRequestSchema, bytes);
}

const FOUND = 0;
const ABSENT = 1;
const MALFORMED = 2;

/**
 * Looks in the message spanning `span` for length-delimited field
 * `number`: FOUND once (`span` is then its value), ABSENT (`span` is
 * then empty), or MALFORMED: found more than once (decoders merge the
 * occurrences), with another wire type, or in a message not well framed.
 */
function onlyField(bytes: Uint8Array, span: Span, number: number): number {
  let found = -1;
  let foundEnd = -1;
  let pos = span.start;
  while (pos < span.end) {
    const tag = varintAt(bytes, pos, span.end);
    if (tag < 0) return MALFORMED;
    const wireType = tag & 7;
    let valueStart = varintEnd;
    let end: number;
    if (wireType === VARINT) {
      if (varintAt(bytes, valueStart, span.end) < 0) return MALFORMED;
      end = varintEnd;
    } else if (wireType === LENGTH_DELIMITED) {
      const length = varintAt(bytes, valueStart, span.end);
      if (length < 0) return MALFORMED;
      valueStart = varintEnd;
      end = valueStart + length;
    } else if (wireType === I64) {
      end = valueStart + 8;
    } else if (wireType === 5) {
      end = valueStart + 4;
    } else {
      return MALFORMED;
    }
    if (end > span.end) return MALFORMED;
    if (Math.floor(tag / 8) === number) {
      if (wireType !== LENGTH_DELIMITED || found >= 0) return MALFORMED;
      found = valueStart;
      foundEnd = end;
    }
    pos = end;
  }
  if (found < 0) {
    span.start = span.end;
    return ABSENT;
  }
  span.start = found;
  span.end = foundEnd;
  return FOUND;
}

/**
 * Walks the encoding of a google.protobuf.Struct, bytes[start, end), at
 * `level` (1 for the payload itself) and returns how deep it nests,
 * counted as checkPayloadDepth counts (each Value one level below its
 * Struct or ListValue, each Struct or ListValue one below its Value); 0
 * when it is not plain or nests deeper than MAX_PAYLOAD_DEPTH. Plain: only
 * the fields protobuf encoders write for a Struct (map entries of a key
 * then a Value), a Value (exactly one of its kinds, a null being
 * NULL_VALUE, a bool 0 or 1) and a ListValue (Values), each with its own
 * wire type, and every string valid UTF-8. A plain Struct decodes, so the
 * caller may skip decoding it.
 */
export function plainStructDepth(
  bytes: Uint8Array,
  start: number,
  end: number,
  level: number,
): number {
  return plainContainerDepth(bytes, start, end, level, true);
}

/**
 * As plainStructDepth, for a Struct (`struct`: its field 1 holds map
 * entries) or a ListValue (its field 1 holds Values).
 */
function plainContainerDepth(
  bytes: Uint8Array,
  start: number,
  end: number,
  level: number,
  struct: boolean,
): number {
  if (level > MAX_PAYLOAD_DEPTH) return 0;
  let deepest = level;
  for (let pos = start; pos < end; ) {
    const fieldEnd = lengthDelimitedEnd(bytes, pos, end, 1);
    if (fieldEnd < 0) return 0;
    if (struct) {
      // A map entry: the key, then the Value.
      const keyEnd = lengthDelimitedEnd(bytes, varintEnd, fieldEnd, 1);
      if (keyEnd < 0 || !isUtf8At(bytes, varintEnd, keyEnd)) return 0;
      if (lengthDelimitedEnd(bytes, keyEnd, fieldEnd, 2) !== fieldEnd) return 0;
    }
    const depth = plainValueDepth(bytes, varintEnd, fieldEnd, level + 1);
    if (depth === 0) return 0;
    if (depth > deepest) deepest = depth;
    pos = fieldEnd;
  }
  return deepest;
}

/** As plainStructDepth, for a google.protobuf.Value. */
function plainValueDepth(bytes: Uint8Array, start: number, end: number, level: number): number {
  if (level > MAX_PAYLOAD_DEPTH || start >= end) return 0;
  let valueEnd: number;
  let depth = level;
  switch (bytes[start]) {
    case (1 << 3) | VARINT: // null_value
      if (bytes[start + 1] !== 0) return 0;
      valueEnd = start + 2;
      break;
    case (2 << 3) | I64: // number_value
      valueEnd = start + 9;
      break;
    case (3 << 3) | LENGTH_DELIMITED: // string_value
      valueEnd = lengthDelimitedEnd(bytes, start, end, 3);
      if (valueEnd < 0 || !isUtf8At(bytes, varintEnd, valueEnd)) return 0;
      break;
    case (4 << 3) | VARINT: // bool_value
      if ((bytes[start + 1] as number) > 1) return 0;
      valueEnd = start + 2;
      break;
    case (5 << 3) | LENGTH_DELIMITED: // struct_value
    case (6 << 3) | LENGTH_DELIMITED: // list_value
      valueEnd = lengthDelimitedEnd(bytes, start, end, (bytes[start] as number) >> 3);
      if (valueEnd < 0) return 0;
      depth = plainContainerDepth(
        bytes,
        varintEnd,
        valueEnd,
        level + 1,
        bytes[start] === ((5 << 3) | LENGTH_DELIMITED),
      );
      break;
    default:
      return 0;
  }
  return valueEnd === end ? depth : 0;
}

/**
 * Where length-delimited field `number`, whose key is at `pos`, ends; its
 * value starts at varintEnd. -1 when the key is another or the value runs
 * past `end`.
 */
function lengthDelimitedEnd(bytes: Uint8Array, pos: number, end: number, number: number): number {
  if (pos >= end || bytes[pos] !== ((number << 3) | LENGTH_DELIMITED)) return -1;
  const length = varintAt(bytes, pos + 1, end);
  if (length < 0) return -1;
  const valueEnd = varintEnd + length;
  return valueEnd > end ? -1 : valueEnd;
}

/** Whether bytes[start, end) is valid UTF-8: ASCII checked here, anything else by isUtf8. */
function isUtf8At(bytes: Uint8Array, start: number, end: number): boolean {
  for (let at = start; at < end; at++) {
    if ((bytes[at] as number) >= 0x80) return isUtf8(bytes.subarray(start, end));
  }
  return true;
}

/** Where the varint read last by varintAt ended. */
let varintEnd = 0;

/**
 * The varint at `pos`, ending before `end`, and sets varintEnd to where
 * it ends; -1 when it runs past `end`. Values past 2^53 lose precision,
 * and are then too large for any length here anyway.
 */
function varintAt(bytes: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let factor = 1;
  for (let at = pos; at < end; at++) {
    const byte = bytes[at] as number;
    value += (byte & 127) * factor;
    if (byte < 128) {
      varintEnd = at + 1;
      return value;
    }
    factor *= 128;
  }
  return -1;
}
