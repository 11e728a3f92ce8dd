import { timingSafeEqual } from "node:crypto";
import { sha256 } from "../sha256.js";

/**
 * What the stores keep to rotate refresh tokens, and the one place where a
 * store writes inside a session's opaque data.
 *
 * Token ids are kept only as digests besides the session's own
 * refresh_token_id: a truncated SHA-256, 128 bits, base64url (22 ASCII
 * characters that never contain the record separator "|"). The previous
 * token, the one that stays accepted for a grace after a rotation, is kept
 * only as its digest, so a dump of the store does not hand out a token
 * that would be answered ALREADY_ROTATED.
 */
export function refreshTokenDigest(tokenId: string): string {
  if (tokenId === "") return "";
  return sha256(tokenId).subarray(0, 16).toString("base64url");
}

/**
 * Whether two digests are equal, in time that does not depend on where
 * they differ. Empty digests (no token) equal nothing.
 */
export function sameDigest(a: string, b: string): boolean {
  if (a === "" || b === "" || a.length !== b.length) return false;
  return timingSafeEqual(Buffer.from(a, "latin1"), Buffer.from(b, "latin1"));
}

// Protobuf wire format of the two Session fields a rotation overrides.
const REFRESH_TOKEN_ID_KEY = (3 << 3) | 2;
const REFRESHED_AT_KEY = (5 << 3) | 2;
const SECONDS_KEY = (1 << 3) | 0;
const NANOS_KEY = (2 << 3) | 0;

/**
 * The bytes a rotation appends to a session's stored data (a protobuf
 * Session, see src/service/session-codec.ts): field 3 (refresh_token_id)
 * and field 5 (refreshed_at) again. A protobuf parser keeps the last value
 * of a string field and merges a repeated message field into the earlier
 * one, so both seconds and nanos are written even when 0, and the result
 * decodes as the session with the new token id and refreshed_at = nowMs.
 * A later rotation replaces this tail rather than adding another, so the
 * data does not grow with every refresh. lua/common.lua's rotation_tail
 * writes the same bytes.
 */
export function rotationTail(tokenId: string, nowMs: number): Uint8Array {
  const token = Buffer.from(tokenId, "utf8");
  const seconds = Math.floor(nowMs / 1000);
  const nanos = (nowMs % 1000) * 1_000_000;
  const timestamp = [SECONDS_KEY, ...varint(seconds), NANOS_KEY, ...varint(nanos)];
  return Uint8Array.from([
    REFRESH_TOKEN_ID_KEY,
    ...varint(token.length),
    ...token,
    REFRESHED_AT_KEY,
    ...varint(timestamp.length),
    ...timestamp,
  ]);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return bytes;
}
