import http2 from "node:http2";
import {
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import {
  type Call,
  type Caller,
  type CallHeaders,
  OK,
  type Peer,
  type PeerCertificate,
} from "../pipeline/call.js";
import type { Admission, Pipeline } from "../pipeline/pipeline.js";
import { CallAbort } from "./call-abort.js";
import {
  type ExplainUndecodable,
  requestTooLarge,
  toStatusError,
  undecodableRequest,
} from "./call-errors.js";
import { callDeadline, deadlineExceeded, parseGrpcTimeout } from "./deadline.js";
import { nodeCallHeaders } from "./node-call-headers.js";
import { peerCertificateOf } from "./peer-certificate.js";

/**
 * A unary handler the fast path can call: it takes the decoded request, the
 * call's cancellation (see call-abort.ts) and the request's encoding, and
 * resolves to a response that encodes itself (see service/reply.ts).
 */
export type UnaryHandler = (
  request: MessageShape<DescMessage>,
  signal: CallAbort,
  encoded: Uint8Array,
) => Promise<{ binary(): Uint8Array }>;

/** Options of {@link createGrpcUnaryFastPath}. */
export interface GrpcUnaryFastPathOptions {
  /** The service whose unary methods to serve. */
  readonly service: DescService;
  /** The handler of each method, by the method's local name. */
  readonly handlers: Readonly<Record<string, UnaryHandler>>;
  /** The policies every call passes through. */
  readonly pipeline: Pipeline;
  /** Requests whose message is larger fail RESOURCE_EXHAUSTED. */
  readonly maxRequestBytes: number;
  /** MAX_DEADLINE: the deadline of calls that set none or a longer one. */
  readonly maxDeadlineMs: number;
  /** Where unexpected failures are logged. */
  readonly logger: Logger;
  /** A more precise answer for some bodies that do not decode (see ExplainUndecodable). */
  readonly explainUndecodable?: ExplainUndecodable;
}

/**
 * Tries to serve one HTTP/2 stream; returns false, touching nothing, when the
 * stream is not for the fast path and must go to the general handler.
 */
export type FastPath = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
) => boolean;

/** The name of the fast path transport, in logs and errors (see Transport). */
export const GRPC_FAST_PATH_TRANSPORT = "grpc-fast-path";

interface Route {
  readonly procedure: string;
  readonly input: DescMessage;
  readonly handler: UnaryHandler;
}

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH } =
  http2.constants;

const CONTENT_TYPE = "application/grpc+proto";
const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const ENVELOPE_HEADER_BYTES = 5;

/**
 * A gRPC server for unary calls with binary protobuf and no compression,
 * written straight against node:http2 streams: one of the two transports of
 * the port, under the same pipeline as the other (connect-node).
 *
 * Why: connect-node serves every call through web-style Headers, async
 * iterables and several promises per request; for the small unary calls
 * this service answers, that plumbing cost more CPU than the work itself
 * (see bench/RESULTS.md). gRPC clients send these calls the same way every
 * time, so this path handles exactly that shape with plain callbacks, and
 * everything else (Connect, gRPC-Web, compressed requests, unknown methods)
 * goes to connect-node on the same port. Both answer alike: the same
 * pipeline, handlers, limits, deadlines, statuses and messages.
 */
export function createGrpcUnaryFastPath(options: GrpcUnaryFastPathOptions): FastPath {
  const routes = new Map<string, Route>();
  for (const method of options.service.methods) {
    const handler = options.handlers[method.localName];
    if (method.methodKind !== "unary" || !handler) continue;
    routes.set(`/${options.service.typeName}/${method.name}`, {
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

/**
 * The Call of a fast-path stream. What telemetry does not read on every
 * call (the headers' wrapper, the peer's address, an AbortSignal) is made
 * only when a policy asks for it.
 */
class FastPathCall implements Call, Peer {
  readonly protocol = "grpc";
  readonly transport = GRPC_FAST_PATH_TRANSPORT;
  readonly httpVersion = "2";
  caller: Caller | undefined = undefined;
  private callHeaders: CallHeaders | undefined;
  private peerAddress: string | undefined;

  constructor(
    readonly procedure: string,
    private readonly rawHeaders: http2.IncomingHttpHeaders,
    private readonly stream: http2.ServerHttp2Stream,
    readonly deadline: number | undefined,
    private readonly abort: CallAbort,
  ) {}

  get headers(): CallHeaders {
    this.callHeaders ??= nodeCallHeaders(this.rawHeaders);
    return this.callHeaders;
  }

  get peer(): Peer {
    return this;
  }

  /** The client's address, remembered once read (the session may close before the call ends). */
  get address(): string | undefined {
    this.peerAddress ??= this.stream.session?.socket?.remoteAddress;
    return this.peerAddress;
  }

  get certificate(): PeerCertificate | undefined {
    return peerCertificateOf(this.stream.session?.socket);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }
}

function serveUnary(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  route: Route,
  options: GrpcUnaryFastPathOptions,
): void {
  const abort = new CallAbort();
  const deadline = callDeadline(
    parseGrpcTimeout(headers["grpc-timeout"] as string | undefined),
    options.maxDeadlineMs,
  );
  const call = new FastPathCall(route.procedure, headers, stream, deadline.at, abort);
  let admission: Admission | undefined;
  /** The status the call ended with, once answered or cancelled. */
  let outcome: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let bodyEnded = false;
  let handlerStarted = false;
  /** A problem with the request body, answered once the call is admitted. */
  let requestError: ConnectError | undefined;
  const chunks: Buffer[] = [];
  let received = 0;

  const finish = (response: Uint8Array | undefined, error: unknown) => {
    if (outcome !== undefined) return;
    clearTimeout(timer);
    if (stream.destroyed || stream.closed) {
      outcome = Code.Canceled;
    } else if (error === undefined && response) {
      sendMessage(stream, response);
      outcome = OK;
    } else {
      const status = toStatusError(error, options.logger, route.procedure);
      sendStatus(stream, status);
      outcome = status.code;
    }
    admission?.finish(outcome);
  };

  const runHandler = () => {
    handlerStarted = true;
    let encoded: Uint8Array;
    let request: MessageShape<DescMessage>;
    try {
      encoded = unwrapEnvelope(
        chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
        route.input.typeName,
      );
      request = decodeMessage(route.input, encoded, options.explainUndecodable);
    } catch (error) {
      finish(undefined, error);
      return;
    }
    // Inside the policies' scopes (the tracing policy's span), so what the
    // handler does is part of the call. Admitted: `admission` is set.
    (admission as Admission)
      .run(() => route.handler(request, abort, encoded))
      .then(
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
  };

  // Policies decide first; then request problems are answered; the handler
  // runs once the whole body is in.
  const proceed = () => {
    if (admission === undefined || outcome !== undefined || handlerStarted) return;
    if (admission.rejection) return finish(undefined, admission.rejection);
    if (deadline.error) return finish(undefined, deadline.error);
    if (requestError) return finish(undefined, requestError);
    if (bodyEnded) runHandler();
  };

  const admit = (admitted: Admission) => {
    admission = admitted;
    if (outcome !== undefined) admitted.finish(outcome);
    else proceed();
  };

  // Data keeps flowing after an early answer (and is dropped), so a client
  // still sending is never stalled on flow control.
  stream.on("data", (chunk: Buffer) => {
    if (outcome !== undefined || requestError) return;
    if (received === 0 && chunk.length >= ENVELOPE_HEADER_BYTES) {
      if (chunk.readUInt32BE(1) > options.maxRequestBytes) {
        requestError = requestTooLarge(options.maxRequestBytes);
        return proceed();
      }
    }
    received += chunk.length;
    if (received > options.maxRequestBytes + ENVELOPE_HEADER_BYTES) {
      requestError = requestTooLarge(options.maxRequestBytes);
      return proceed();
    }
    chunks.push(chunk);
  });
  stream.once("end", () => {
    bodyEnded = true;
    proceed();
  });

  // A client that resets the stream with an error code makes Node emit
  // "error" on it; "close" follows and cancels the call, so nothing is left
  // to do here but keep the process from treating it as unhandled.
  stream.on("error", () => {});

  stream.once("close", () => {
    if (outcome !== undefined) return;
    // The client went away (cancelled, or the connection dropped): stop the
    // work, whether or not it set a deadline.
    clearTimeout(timer);
    outcome = Code.Canceled;
    abort.abort(statusError("CANCELLED", "the client cancelled the call"));
    admission?.finish(outcome);
  });

  if (deadline.timeoutMs !== undefined) {
    timer = setTimeout(() => {
      const reason = deadlineExceeded(deadline);
      abort.abort(reason);
      finish(undefined, reason);
    }, deadline.timeoutMs);
  }

  const started = options.pipeline.start(call);
  if (started instanceof Promise) started.then(admit);
  else admit(started);
}

/**
 * The one message of a unary request body, without its envelope; fails as
 * the connect-node transport does for the same body.
 */
function unwrapEnvelope(body: Buffer, typeName: string): Uint8Array {
  if (body.length === 0) {
    throw statusError("UNIMPLEMENTED", "protocol error: missing input message for unary method");
  }
  const size = body.length >= ENVELOPE_HEADER_BYTES ? body.readUInt32BE(1) : Number.NaN;
  const end = ENVELOPE_HEADER_BYTES + size;
  // A truncated envelope, or a compressed one without grpc-encoding, cannot
  // be read as a message.
  if (!(body.length >= end)) throw undecodableRequest(typeName);
  if (body.length > end) {
    const rest = body.length - end;
    const next = rest >= ENVELOPE_HEADER_BYTES ? body.readUInt32BE(end + 1) : Number.NaN;
    if (!(rest - ENVELOPE_HEADER_BYTES >= next)) throw undecodableRequest(typeName);
    throw statusError(
      "UNIMPLEMENTED",
      "protocol error: received extra input message for unary method",
    );
  }
  if (((body[0] as number) & 1) === 1) throw undecodableRequest(typeName);
  return body.subarray(ENVELOPE_HEADER_BYTES, end);
}

function decodeMessage(
  schema: DescMessage,
  bytes: Uint8Array,
  explain: ExplainUndecodable | undefined,
): MessageShape<DescMessage> {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw explain?.(schema.typeName, message) ?? undecodableRequest(schema.typeName);
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

/**
 * A Trailers-Only response: the status in the only HEADERS frame, with
 * grpc-status-details-bin (base64 of a google.rpc.Status holding the code,
 * the message and every detail, the ErrorInfo among them) written by
 * connect's own encoder, so it is byte for byte what connect-node sends,
 * and the error's metadata (such as the rate limit's
 * grpc-retry-pushback-ms) as trailers, as connect-node sends them.
 */
function sendStatus(stream: http2.ServerHttp2Stream, error: ConnectError): void {
  if (stream.headersSent) {
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  const headers: http2.OutgoingHttpHeaders = {
    [HTTP2_HEADER_STATUS]: 200,
    [HTTP2_HEADER_CONTENT_TYPE]: CONTENT_TYPE,
    "grpc-status": String(error.code),
    "grpc-message": encodeGrpcMessage(error.rawMessage),
  };
  error.metadata.forEach((value, key) => {
    if (!(key in headers)) headers[key] = value;
  });
  if (error.details.length > 0) {
    const details = setTrailerStatus(new Headers(), error).get("grpc-status-details-bin");
    if (details !== null) headers["grpc-status-details-bin"] = details;
  }
  stream.respond(headers, { endStream: true });
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
