import type { StoredSession } from "../session-store.js";

/**
 * How a session is stored in its field of the user's hash (redis-keys.ts): a
 * short ASCII header the Lua scripts read with one pattern match, then the
 * encoded session as is:
 *
 *   2|<version>|<storage expiry ms>|<expires_at ms, 0 for none>|
 *     <current token digest>|<previous token digest>|<previous accepted until ms>|
 *     <rotation tail bytes>|<data>
 *
 * The leading digit is the format. Format 1 (written before refresh tokens
 * were recorded) lacks the four refresh fields, and is still read. The
 * refresh fields are the scripts' business (lua/refresh.lua): a session's
 * data already ends with what the last rotation appended. Nothing in a
 * record is ever evaluated or used to choose a type on decode.
 */
const SEPARATOR = 0x7c; // "|"
const HEADERS: Readonly<Record<string, { fields: number; pattern: RegExp }>> = {
  "1": { fields: 4, pattern: /^1\|(\d+)\|(\d+)\|(\d+)$/ },
  "2": { fields: 8, pattern: /^2\|(\d+)\|(\d+)\|(\d+)\|[\w-]*\|[\w-]*\|\d+\|\d+$/ },
};

/** Decodes a stored record; throws on anything that is not one. */
export function decodeRecord(userId: string, sessionId: string, record: Buffer): StoredSession {
  const format = HEADERS[String.fromCharCode(record[0] ?? 0)];
  let separators = 0;
  let dataStart = -1;
  for (let i = 0; format && i < record.length; i++) {
    if (record[i] === SEPARATOR && ++separators === format.fields) {
      dataStart = i + 1;
      break;
    }
  }
  const header =
    format && dataStart > 0
      ? format.pattern.exec(record.toString("latin1", 0, dataStart - 1))
      : null;
  if (!header) throw new Error("malformed session record");
  const [, version = "", storageExpiresAt = "", expiresAt = ""] = header;
  return {
    userId,
    sessionId,
    data: record.subarray(dataStart),
    version: BigInt(version),
    storageExpiresAtMs: Number(storageExpiresAt),
    expiresAtMs: expiresAt === "0" ? undefined : Number(expiresAt),
  };
}
