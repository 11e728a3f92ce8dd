import type { StoredSession } from "../session-store.js";

/**
 * How a session is stored in its field of the user's hash (redis-keys.ts): a
 * short ASCII header the Lua scripts read with one pattern match, then the
 * encoded session as is:
 *
 *   1|<version>|<storage expiry ms>|<expires_at ms, 0 for none>|<data>
 *
 * The leading "1" is the format version. Nothing in a record is ever
 * evaluated or used to choose a type on decode.
 */
const SEPARATOR = 0x7c; // "|"
const HEADER = /^1\|(\d+)\|(\d+)\|(\d+)$/;

/** Decodes a stored record; throws on anything that is not one. */
export function decodeRecord(userId: string, sessionId: string, record: Buffer): StoredSession {
  let separators = 0;
  let dataStart = -1;
  for (let i = 0; i < record.length; i++) {
    if (record[i] === SEPARATOR && ++separators === 4) {
      dataStart = i + 1;
      break;
    }
  }
  const header = dataStart > 0 ? HEADER.exec(record.toString("latin1", 0, dataStart - 1)) : null;
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
