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
  const { storageExpiresAt: _ignored, ...fields } = session;
  return toBinary(SessionSchema, { ...fields, version: 0n });
}

/** The Session as clients see it: stored fields plus the store's metadata. */
export function decodeSession(stored: StoredSession): Session {
  const session = fromBinary(SessionSchema, stored.data);
  session.version = stored.version;
  session.storageExpiresAt = timestampFromMs(stored.storageExpiresAtMs);
  return session;
}
