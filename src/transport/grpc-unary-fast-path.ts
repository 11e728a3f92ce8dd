import http2 from "node:http2";
import {
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

/** A unary method the fast path serves. */
export interface UnaryRoute {
  readonly name: string;
  /** "package.Service/Method", as metrics and logs name it. */
  readonly procedure: string;
  readonly input: DescMessage;
  /**
   * Takes the decoded request and its encoding; resolves to the response,
   * which encodes itself (see service/reply.ts).
   */
  readonly handler: (
    request: MessageShape<DescMessage>,
    signal: AbortSignal | undefined,
    encoded: Uint8Array,
  ) => Promise<{ binary(): Uint8Array }>;
}

/** Options of {@link createGrpcUnaryFastPath}. */
export interface GrpcUnaryFastPathOptions {
  /** The service whose unary methods to serve. */
  readonly service: DescService;
  /** The handler of each method, by the method's local name. */
  readonly handlers: Readonly<Record<string, UnaryRoute["handler"]>>;
  /** Requests whose message is larger fail RESOURCE_EXHAUSTED. */
  readonly readMaxBytes: number;
  /** Turns any failure into the status to send (and logs what it must). */
  readonly toStatus: (error: unknown, method: string) => ConnectError;
  /**
   * Told when a call starts (with a way to read its client's address); the
   * function it returns is told the call's status code when it ends.
   */
  readonly observe: (procedure: string, peer: () => string | undefined) => (code: number) => void;
}

/**
 * Tries to serve one HTTP/2 stream; returns false, touching nothing, when the
 * stream is not for the fast path and must go to the general handler.
 */
export type FastPath = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => boolean;

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH } =
  http2.constants;

const CONTENT_TYPE = "application/grpc+proto";
const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const ENVELOPE_HEADER_BYTES = 5;

/**
 * A gRPC server for unary calls with binary protobuf and no compression,
 * written straight against node:http2 streams.
 *
 * Why: connect-node serves every call through web-style Headers, async
 * iterables and an AbortController per request; for the small unary calls
 * this service answers, that plumbing cost more CPU than the work itself
 * (see bench/RESULTS.md). gRPC clients send these calls the same way every
 * time, so this path handles exactly that shape with plain callbacks, and
 * everything else (Connect, gRPC-Web, compressed requests, unknown methods)
 * still goes to connect-node on the same port, with identical semantics:
 * the same handlers, error mapping, size limit and deadlines.
 */
export function createGrpcUnaryFastPath(options: GrpcUnaryFastPathOptions): FastPath {
  const routes = new Map<string, UnaryRoute>();
  for (const method of options.service.methods) {
    const handler = options.handlers[method.localName];
    if (method.methodKind !== "unary" || !handler) continue;
    routes.set(`/${options.service.typeName}/${method.name}`, {
      name: method.name,
      procedure: `${options.service.typeName}/${method.name}`,
      input: method.input,
      handler,
    });
  }
  return (stream, headers) => {
    const route = routes.get(headers[HTTP2_HEADER_PATH] as string);
    if (
      route === undefined ||
      headers[HTTP2_HEADER_METHOD] !== "POST" ||
      !GRPC_CONTENT_TYPES.has(headers[HTTP2_HEADER_CONTENT_TYPE] as string) ||
      (headers["grpc-encoding"] !== undefined && headers["grpc-encoding"] !== "identity")
    ) {
      return false;
    }
    serveUnary(stream, headers, route, options);
    return true;
  };
}

function serveUnary(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  route: UnaryRoute,
  options: GrpcUnaryFastPathOptions,
): void {
  let done = false;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  const ended = options.observe(route.procedure, () => stream.session?.socket?.remoteAddress);

  const finish = (response: Uint8Array | undefined, error: unknown) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (stream.destroyed || stream.closed) {
      ended(Code.Canceled);
      return;
    }
    if (error === undefined && response) {
      sendMessage(stream, response);
      ended(0);
    } else {
      const status = options.toStatus(error, route.name);
      sendStatus(stream, status);
      ended(status.code);
    }
  };

  // Data keeps flowing after an early answer (and is dropped), so a client
  // still sending is never stalled on flow control.
  const onData = (chunk: Buffer) => {
    if (done) return;
    if (received === 0 && chunk.length >= ENVELOPE_HEADER_BYTES) {
      const size = chunk.readUInt32BE(1);
      if (size > options.readMaxBytes) {
        finish(
          undefined,
          new ConnectError(
            `message size ${size} is larger than configured readMaxBytes ${options.readMaxBytes}`,
            Code.ResourceExhausted,
          ),
        );
        return;
      }
    }
    received += chunk.length;
    if (received > options.readMaxBytes + ENVELOPE_HEADER_BYTES) {
      finish(
        undefined,
        new ConnectError("request is larger than configured readMaxBytes", Code.ResourceExhausted),
      );
      return;
    }
    chunks.push(chunk);
  };
  stream.on("data", onData);

  stream.once("end", () => {
    if (done) return;
    let encoded: Uint8Array;
    let request: MessageShape<DescMessage>;
    try {
      encoded = unwrapEnvelope(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
      request = decodeMessage(route.input, encoded);
    } catch (error) {
      finish(undefined, error);
      return;
    }
    route.handler(request, controller?.signal, encoded).then(
      (response) => {
        let bytes: Uint8Array;
        try {
          bytes = response.binary();
        } catch (error) {
          finish(undefined, error);
          return;
        }
        finish(bytes, undefined);
      },
      (error: unknown) => finish(undefined, error),
    );
  });

  // A client that resets the stream with an error code makes Node emit
  // "error" on it; "close" follows and cancels the call, so nothing is left
  // to do here but keep the process from treating it as unhandled.
  stream.on("error", () => {});

  stream.once("close", () => {
    if (done) return;
    // The client went away (cancelled, or the connection dropped).
    done = true;
    clearTimeout(timer);
    ended(Code.Canceled);
    controller?.abort(new ConnectError("the client cancelled the call", Code.Canceled));
  });

  const timeout = headers["grpc-timeout"];
  if (timeout !== undefined) {
    const ms = parseTimeout(timeout as string);
    if (ms === undefined) {
      finish(
        undefined,
        new ConnectError("protocol error: invalid grpc-timeout", Code.InvalidArgument),
      );
      return;
    }
    controller = new AbortController();
    timer = setTimeout(() => {
      const reason = new ConnectError("the operation timed out", Code.DeadlineExceeded);
      controller?.abort(reason);
      finish(undefined, reason);
    }, ms);
  }
}

/** The one message of a unary request body, without its envelope. */
function unwrapEnvelope(body: Buffer): Uint8Array {
  if (body.length < ENVELOPE_HEADER_BYTES) {
    throw new ConnectError("protocol error: missing request message", Code.InvalidArgument);
  }
  const flags = body[0] as number;
  const size = body.readUInt32BE(1);
  if (body.length !== ENVELOPE_HEADER_BYTES + size) {
    throw new ConnectError(
      "protocol error: a unary request carries exactly one message",
      Code.InvalidArgument,
    );
  }
  if ((flags & 1) === 1) {
    throw new ConnectError(
      "protocol error: compressed message without grpc-encoding",
      Code.Internal,
    );
  }
  return body.subarray(ENVELOPE_HEADER_BYTES);
}

function decodeMessage(schema: DescMessage, bytes: Uint8Array): MessageShape<DescMessage> {
  try {
    return fromBinary(schema, bytes);
  } catch {
    throw new ConnectError(`request is not a valid ${schema.typeName}`, Code.InvalidArgument);
  }
}

function sendMessage(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  const frame = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + message.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, ENVELOPE_HEADER_BYTES);
  stream.respond(
    { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: CONTENT_TYPE },
    { waitForTrailers: true },
  );
  stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
  stream.end(frame);
}

/** A Trailers-Only response: the status in the only HEADERS frame. */
function sendStatus(stream: http2.ServerHttp2Stream, error: ConnectError): void {
  if (stream.headersSent) {
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  stream.respond(
    {
      [HTTP2_HEADER_STATUS]: 200,
      [HTTP2_HEADER_CONTENT_TYPE]: CONTENT_TYPE,
      "grpc-status": String(error.code),
      "grpc-message": encodeGrpcMessage(error.rawMessage),
    },
    { endStream: true },
  );
}

const TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};

/** Parses a grpc-timeout header ("100m", "5S", ...) into milliseconds. */
export function parseTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * (TIMEOUT_UNIT_MS[match[2] as string] as number);
}

/**
 * Percent-encodes a status message as the gRPC spec asks: UTF-8, with every
 * byte outside printable ASCII, and "%" itself, written as %XX. Unlike
 * encodeURIComponent this leaves ":" and "," alone, which grpc-js clients
 * (decoding with decodeURI) would otherwise show escaped.
 */
export function encodeGrpcMessage(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}
