import type net from "node:net";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";

/**
 * HTTP/2 spoken frame by frame over a plain socket, for tests that play a
 * peer no client library would let them be: one that ignores the server's
 * limits, resets streams as fast as it opens them, never ends a header
 * block, or floods control frames.
 */

/** The connection preface every prior-knowledge HTTP/2 client sends first. */
export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** Frame types used by the tests. */
export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  CONTINUATION: 0x9,
} as const;

/** Frame flags used by the tests. */
export const FLAG = { ACK: 0x1, END_STREAM: 0x1, END_HEADERS: 0x4 } as const;

/** One HTTP/2 frame as read off the wire. */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

/** An HTTP/2 frame. */
export function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/**
 * A Get's request headers, HPACK-encoded as literals without indexing (so
 * frames can be sent in any number and order without an encoder's state).
 */
export function requestHeaders(): Buffer {
  const fields: [string, string][] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", `/${SessionStoreService.typeName}/Get`],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
  ];
  return Buffer.concat(
    fields.flatMap(([name, value]) => [
      Buffer.from([0x00, name.length]),
      Buffer.from(name),
      Buffer.from([value.length]),
      Buffer.from(value),
    ]),
  );
}

/** The frames the server sends on `socket`, as they arrive. */
export function rawFrames(socket: net.Socket): RawFrame[] {
  const frames: RawFrame[] = [];
  let buffered: Buffer = Buffer.alloc(0);
  socket.on("error", () => {});
  socket.on("data", (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      frames.push({
        type: buffered[3] as number,
        flags: buffered[4] as number,
        stream: buffered.readUInt32BE(5) & 0x7fffffff,
        payload: buffered.subarray(9, 9 + length),
      });
      buffered = buffered.subarray(9 + length);
    }
  });
  return frames;
}

/** The error code of a GOAWAY frame. */
export function goawayCode(goaway: RawFrame): number {
  return goaway.payload.readUInt32BE(4);
}
