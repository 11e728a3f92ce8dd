import { hash } from "node:crypto";

/**
 * The SHA-256 digest of `data`'s UTF-8 bytes, by the one-shot crypto.hash
 * (Node 20.12 and later, hence package.json's engines): a Hash object per
 * digest, with its native handle to finalize, cost several times the
 * digest itself in a CPU profile of the service under Upsert load.
 */
export function sha256(data: string): Buffer {
  return hash("sha256", data, "buffer");
}
