import {
  createAsyncIterable,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";

/**
 * gRPC-Web's text variant (application/grpc-web-text): the same frames as
 * binary gRPC-Web, base64-encoded, as browsers without binary streaming
 * send them (the default mode of Google's grpc-web client). connect-node
 * serves only the binary variant, so the connect-node transport translates
 * text requests to binary and the responses back.
 */

const PAD = 61; // "="

/**
 * Turns a gRPC-Web text request into the binary request connect-node
 * serves: the same codec (+proto or +json), the body base64-decoded.
 */
export function textRequestToBinary(request: UniversalServerRequest): void {
  const type = request.header.get("content-type") ?? "";
  request.header.set(
    "content-type",
    type.replace(/^application\/grpc-web-text/i, "application/grpc-web"),
  );
  request.body = decodeBase64Body(request.body as AsyncIterable<Uint8Array>);
}

/** Turns connect-node's binary gRPC-Web response into the text variant the client asked for. */
export function binaryResponseToText(response: UniversalServerResponse): UniversalServerResponse {
  const header = new Headers(response.header);
  const type = header.get("content-type") ?? "application/grpc-web+proto";
  header.set("content-type", type.replace(/^application\/grpc-web/i, "application/grpc-web-text"));
  return {
    ...response,
    header,
    body: encodeBase64Body(response.body ?? createAsyncIterable([])),
  };
}

/**
 * Decodes a base64 request body. Senders may pad each chunk they write, so
 * the text can hold several padded segments; Node's decoder stops at the
 * first padding, so each segment is decoded on its own.
 */
export async function* decodeBase64Body(
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let pending = "";
  for await (const chunk of body) {
    pending += Buffer.from(chunk).toString("latin1").replace(/\s+/g, "");
    const whole = pending.length - (pending.length % 4);
    let start = 0;
    for (let i = 0; i < whole; i += 4) {
      if (pending.charCodeAt(i + 3) === PAD) {
        yield Buffer.from(pending.slice(start, i + 4), "base64");
        start = i + 4;
      }
    }
    if (whole > start) yield Buffer.from(pending.slice(start, whole), "base64");
    pending = pending.slice(whole);
  }
  if (pending.length > 0) yield Buffer.from(pending, "base64");
}

/**
 * Encodes a response body as one continuous base64 text: bytes that do not
 * fill a 3-byte group wait for the next chunk, so padding appears only at
 * the very end.
 */
export async function* encodeBase64Body(
  body: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let carry: Buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    const bytes = carry.length === 0 ? Buffer.from(chunk) : Buffer.concat([carry, chunk]);
    const whole = bytes.length - (bytes.length % 3);
    carry = bytes.subarray(whole);
    if (whole > 0) yield base64Chunk(bytes.subarray(0, whole));
  }
  if (carry.length > 0) yield base64Chunk(carry);
}

/** A chunk of bytes as base64 text bytes. */
export function base64Chunk(bytes: Uint8Array): Uint8Array {
  return Buffer.from(Buffer.from(bytes).toString("base64"), "latin1");
}
