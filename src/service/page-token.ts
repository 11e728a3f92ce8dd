import { checkId, invalid } from "./validate.js";

/**
 * ListByUser page tokens. A token names the last session id of the previous
 * page, so the next page starts strictly after it: a session that exists for
 * the whole listing is returned exactly once, whatever else changes between
 * pages. It is base64url of a format byte followed by the id's UTF-8, opaque
 * to clients, and validated strictly on the way back in.
 */
const FORMAT = 1;

export function encodePageToken(lastSessionId: string): string {
  const id = Buffer.from(lastSessionId, "utf8");
  return Buffer.concat([Buffer.of(FORMAT), id]).toString("base64url");
}

/** Decodes a page token; an empty token means the first page. */
export function decodePageToken(token: string): string | undefined {
  if (token === "") return undefined;
  const bytes = Buffer.from(token, "base64url");
  // Buffer.from skips characters outside the alphabet, so only a token that
  // re-encodes to itself is well formed.
  if (bytes.toString("base64url") !== token || bytes[0] !== FORMAT) throw malformed();
  let id: string;
  try {
    id = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(1));
    checkId("page_token", id);
  } catch {
    throw malformed();
  }
  return id;
}

function malformed() {
  return invalid("page_token", "is malformed - pass the next_page_token of the previous page");
}
