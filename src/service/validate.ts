import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import { statusError } from "../error-info.js";

/**
 * Input checks shared by the handlers. Each failure is INVALID_ARGUMENT with
 * a message naming the field and what a valid value is, never the value
 * itself (ids and tokens are personal data), and an ErrorInfo whose reason
 * says which rule was broken (INVALID_FIELD unless a more precise one
 * applies) and whose metadata names the field and the limit.
 *
 * Status messages avoid URI-reserved characters such as ":" and ",": the
 * server percent-encodes grpc-message with encodeURIComponent, and grpc-js
 * clients decode it with decodeURI, which leaves those characters escaped.
 */

export const MAX_ID_BYTES = 128;

/** Unicode category Cc: exactly U+0000-U+001F and U+007F-U+009F. */
const CONTROL = /\p{Cc}/u;

/**
 * INVALID_FIELD: `field` is missing or malformed. `limits` adds the limit
 * broken, by name (such as maxItems), for a program to act on without
 * parsing the message.
 */
export function invalid(
  field: string,
  problem: string,
  limits: Readonly<Record<string, string>> = {},
): ConnectError {
  return statusError("INVALID_FIELD", `${field} ${problem}`, { field, ...limits });
}

/**
 * An id is 1 to 128 bytes of UTF-8 without control characters. Unpaired
 * surrogates (possible in JSON) are rejected too: they have no UTF-8
 * encoding, so two different strings would name the same session.
 */
export function checkId(field: string, value: string): string {
  if (value.length === 0) throw invalid(field, "is required");
  if (Buffer.byteLength(value, "utf8") > MAX_ID_BYTES || !value.isWellFormed()) {
    throw invalid(field, `must be at most ${MAX_ID_BYTES} bytes of valid UTF-8`);
  }
  if (CONTROL.test(value)) throw invalid(field, "must not contain control characters");
  return value;
}

/** Largest Duration and Timestamp seconds protobuf allows, roughly 10,000 years. */
const MAX_DURATION_SECONDS = 315_576_000_000n;
const MIN_TIMESTAMP_SECONDS = -62_135_596_800n; // 0001-01-01T00:00:00Z
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n; // 9999-12-31T23:59:59Z

/**
 * A ttl is a positive Duration of at most maxSeconds, returned in whole
 * milliseconds, rounding a fraction of a millisecond up so it stays positive.
 * (Within the Duration range, seconds * 1000 is an exact double.) A missing
 * or malformed Duration is INVALID_FIELD; a well-formed one that is not
 * positive or is too long, TTL_OUT_OF_RANGE.
 */
export function checkTtl(field: string, ttl: Duration | undefined, maxSeconds: number): number {
  if (!ttl) throw invalid(field, "is required");
  const { nanos } = ttl;
  if (
    ttl.seconds > MAX_DURATION_SECONDS ||
    ttl.seconds < -MAX_DURATION_SECONDS ||
    nanos <= -1e9 ||
    nanos >= 1e9 ||
    (ttl.seconds > 0n && nanos < 0) ||
    (ttl.seconds < 0n && nanos > 0)
  ) {
    throw invalid(field, "is not a valid duration");
  }
  const seconds = Number(ttl.seconds);
  if (seconds < 0 || (seconds === 0 && nanos <= 0)) {
    throw statusError("TTL_OUT_OF_RANGE", `${field} must be positive`, { field });
  }
  if (seconds > maxSeconds || (seconds === maxSeconds && nanos > 0)) {
    throw statusError("TTL_OUT_OF_RANGE", `${field} must be at most ${maxSeconds} seconds`, {
      field,
      maxSeconds: String(maxSeconds),
    });
  }
  return seconds * 1000 + Math.ceil(nanos / 1_000_000);
}

/** A Timestamp must be within 0001-01-01 and 9999-12-31 with nanos in range. */
export function checkTimestamp(field: string, value: Timestamp | undefined): void {
  if (!value) return;
  if (
    value.seconds < MIN_TIMESTAMP_SECONDS ||
    value.seconds > MAX_TIMESTAMP_SECONDS ||
    value.nanos < 0 ||
    value.nanos >= 1e9
  ) {
    throw invalid(field, "is not a valid timestamp");
  }
}

/** A timestamp in whole Unix milliseconds, rounded down. */
export function floorMs(value: Timestamp): number {
  return Number(value.seconds) * 1000 + Math.floor(value.nanos / 1_000_000);
}

/**
 * The deepest extra_payload accepted, counted in protobuf message levels as
 * decoders count them toward their recursion limits: the Struct itself is
 * level 1, each Value in a Struct or ListValue one more, each Struct or
 * ListValue in a Value one more (`{"a": {"b": 1}}` is 4 levels).
 *
 * Why 32: every client must be able to read back what it stored, and
 * decoders stop at 100 levels counted over the whole response. Python's
 * C++ decoder (grpcio) also counts the map entry between a Struct and each
 * of its Values, so it fails at 67 levels of nested objects; protobuf-es
 * fails binary responses at 99. 32 leaves every one of them a margin of
 * about two, and is a depth no session payload needs to approach.
 */
export const MAX_PAYLOAD_DEPTH = 32;

/** The answer to an extra_payload nested deeper than MAX_PAYLOAD_DEPTH. */
export function payloadTooDeep(field: string): ConnectError {
  return statusError(
    "PAYLOAD_TOO_DEEP",
    `${field} must nest at most ${MAX_PAYLOAD_DEPTH} levels deep`,
    {
      field,
      maxDepth: String(MAX_PAYLOAD_DEPTH),
    },
  );
}

/**
 * The answer to an extra_payload whose protobuf encoding is over
 * MAX_PAYLOAD_BYTES (`maxBytes`), naming the setting so an operator knows
 * what to raise.
 */
export function payloadTooLarge(field: string, maxBytes: number): ConnectError {
  return statusError("PAYLOAD_TOO_LARGE", `${field} must encode to at most ${maxBytes} bytes`, {
    field,
    limit: "MAX_PAYLOAD_BYTES",
    maxBytes: String(maxBytes),
  });
}

/**
 * Rejects an extra_payload nested deeper than MAX_PAYLOAD_DEPTH levels (see
 * there). protobuf-es holds a Struct field as plain JSON: an object is a
 * Struct, an array a ListValue, and every member or item a Value.
 * Iterative, and stops at the first level too deep, so a hostile payload
 * costs no more than walking its first MAX_PAYLOAD_DEPTH levels.
 */
export function checkPayloadDepth(field: string, struct: JsonObject | undefined): void {
  if (!struct) return;
  /** Values still to look at, each with its level. */
  const pending: [JsonValue, number][] = [];
  const pushMembers = (container: JsonObject | JsonValue[], depth: number) => {
    for (const value of Array.isArray(container) ? container : Object.values(container)) {
      if (value !== undefined) pending.push([value, depth + 1]);
    }
  };
  pushMembers(struct, 1);
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [value, depth] = next;
    if (depth > MAX_PAYLOAD_DEPTH) throw payloadTooDeep(field);
    if (value === null || typeof value !== "object") continue;
    // The Struct or ListValue this Value holds is one level further in.
    if (depth + 1 > MAX_PAYLOAD_DEPTH) throw payloadTooDeep(field);
    pushMembers(value, depth + 1);
  }
}

/** Grace of a Refresh that sets none. */
export const DEFAULT_REFRESH_GRACE_MS = 10_000;

/**
 * A Refresh's grace: absent means DEFAULT_REFRESH_GRACE_MS, zero means
 * none, otherwise a positive Duration (checked like a ttl) of at most
 * maxMs, in whole milliseconds.
 */
export function checkGrace(field: string, grace: Duration | undefined, maxMs: number): number {
  if (!grace) return DEFAULT_REFRESH_GRACE_MS;
  if (grace.seconds === 0n && grace.nanos === 0) return 0;
  const ms = checkTtl(field, grace, Number(MAX_DURATION_SECONDS));
  if (ms > maxMs)
    throw invalid(field, `must be at most ${maxMs / 1000} seconds (MAX_REFRESH_GRACE)`);
  return ms;
}
