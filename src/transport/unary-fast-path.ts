import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  fromJsonString,
  type MessageShape,
  toJsonString,
} from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { type Compression, compressionNegotiate } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import {
  type Call,
  type Caller,
  type CallHeaders,
  OK,
  type Peer,
  type PeerCertificate,
  type Protocol,
} from "../pipeline/call.js";
import type { Admission, Pipeline } from "../pipeline/pipeline.js";
import { CallAbort } from "./call-abort.js";
import {
  type ExplainUndecodable,
  fieldOfJsonError,
  requestTooLarge,
  toStatusError,
  undecodableRequest,
} from "./call-errors.js";
import {
  callDeadline,
  deadlineExceeded,
  parseConnectTimeout,
  parseGrpcTimeout,
} from "./deadline.js";
import { nodeCallHeaders } from "./node-call-headers.js";
import { peerCertificateOf } from "./peer-certificate.js";
import { resetUnreadRequest } from "./unread-request.js";

/**
 * A unary handler the fast path can call: it takes the decoded request, the
 * call's cancellation (see call-abort.ts) and the request's protobuf
 * encoding (absent for a JSON request), and resolves to a response that
 * encodes itself (see service/reply.ts).
 */
export type UnaryHandler = (
  request: MessageShape<DescMessage>,
  signal: CallAbort,
  encoded: Uint8Array | undefined,
) => Promise<{ binary(): Uint8Array; message(): unknown }>;

/** Options of {@link createUnaryFastPath}. */
export interface UnaryFastPathOptions {
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
  /**
   * Decoders of some methods' binary requests, by the method's local name,
   * in place of fromBinary (see decodeUpsertRequest): each must accept and
   * refuse exactly what fromBinary does.
   */
  readonly binaryDecoders?: Readonly<
    Record<string, (bytes: Uint8Array) => MessageShape<DescMessage>>
  >;
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
export const FAST_PATH_TRANSPORT = "fast-path";

interface Route {
  readonly procedure: string;
  readonly input: DescMessage;
  /** Decodes a binary request. */
  readonly decode: (bytes: Uint8Array) => MessageShape<DescMessage>;
  readonly output: DescMessage;
  readonly handler: UnaryHandler;
}

/**
 * One way of framing a unary call that the fast path serves: how it reads
 * the request and writes the answer, each as connect-node does.
 */
interface Wire {
  readonly protocol: Protocol;
  /** The message is in a 5-byte envelope (gRPC, gRPC-Web), not the whole body (Connect). */
  readonly enveloped: boolean;
  /** Protobuf JSON instead of binary (Connect only). */
  readonly json: boolean;
  /** The content type of every answer, errors included (but Connect's errors). */
  readonly contentType: string;
  readonly timeoutHeader: "grpc-timeout" | "connect-timeout-ms";
  /** The request header naming a compression of its body, which sends the call to connect-node. */
  readonly encodingHeader: "grpc-encoding" | "content-encoding";
  /** The request header listing the compressions its client reads (none for gRPC: see below). */
  readonly acceptHeader: "grpc-accept-encoding" | "accept-encoding" | undefined;
}

const GRPC: Wire = {
  protocol: "grpc",
  enveloped: true,
  json: false,
  contentType: "application/grpc+proto",
  timeoutHeader: "grpc-timeout",
  encodingHeader: "grpc-encoding",
  // The gRPC path has never compressed answers: unary responses of this
  // service are small, and gRPC clients read them either way.
  acceptHeader: undefined,
};
const GRPC_WEB: Wire = {
  ...GRPC,
  protocol: "grpc-web",
  contentType: "application/grpc-web+proto",
  acceptHeader: "grpc-accept-encoding",
};
const CONNECT_PROTO: Wire = {
  protocol: "connect",
  enveloped: false,
  json: false,
  contentType: "application/proto",
  timeoutHeader: "connect-timeout-ms",
  encodingHeader: "content-encoding",
  acceptHeader: "accept-encoding",
};
const CONNECT_JSON: Wire = { ...CONNECT_PROTO, json: true, contentType: "application/json" };

/**
 * The content types the fast path takes, exactly as clients send them;
 * anything else (gRPC-Web text or JSON, Connect streaming, other charsets)
 * goes to connect-node.
 */
const WIRES = new Map<string, Wire>([
  ["application/grpc", GRPC],
  ["application/grpc+proto", GRPC],
  ["application/grpc-web", GRPC_WEB],
  ["application/grpc-web+proto", GRPC_WEB],
  ["application/proto", CONNECT_PROTO],
  ["application/json", CONNECT_JSON],
  ["application/json; charset=utf-8", CONNECT_JSON],
  ["application/json;charset=utf-8", CONNECT_JSON],
]);

/** The compressions connect-node reads and writes (see connect-node-transport.ts), in its order. */
const COMPRESSIONS: Compression[] = [compressionGzip, compressionBrotli];
/** connect-node's default: smaller answers are never compressed. */
const COMPRESS_MIN_BYTES = 1024;
/** connect's JSON options: unknown fields are ignored. */
const JSON_OPTIONS = { ignoreUnknownFields: true } as const;
/** Not fatal: invalid UTF-8 is replaced, as connect-node's decoder does. Shared by every call. */
const UTF8 = new TextDecoder();

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH } =
  http2.constants;

const ENVELOPE_HEADER_BYTES = 5;
/** A gRPC-Web answer's last frame when the call succeeded: the trailers "grpc-status: 0". */
const GRPC_WEB_OK_TRAILER = envelope(
  trailerFlag,
  trailerSerialize(new Headers({ "grpc-status": "0" })),
);

/**
 * A server for the unary calls of gRPC, gRPC-Web (binary) and Connect
 * (binary and JSON) over HTTP/2, written straight against node:http2
 * streams: one of the two transports of the port, under the same pipeline
 * as the other (connect-node).
 *
 * Why: connect-node serves every call through web-style Headers, async
 * iterables and several promises per request; for the small unary calls
 * this service answers, that plumbing cost more CPU than the work itself
 * (see bench/RESULTS.md). Clients send these calls the same way every time,
 * so this path handles exactly those shapes with plain callbacks, and
 * everything else (compressed requests, Connect GET, gRPC-Web text,
 * streams, health, reflection, unknown methods, HTTP/1.1) goes to
 * connect-node on the same port. Both answer alike: the same pipeline,
 * handlers, limits, deadlines, statuses, messages and details, framed as
 * connect-node frames them.
 */
export function createUnaryFastPath(options: UnaryFastPathOptions): FastPath {
  const routes = new Map<string, Route>();
  for (const method of options.service.methods) {
    const handler = options.handlers[method.localName];
    if (method.methodKind !== "unary" || !handler) continue;
    routes.set(`/${options.service.typeName}/${method.name}`, {
      procedure: `${options.service.typeName}/${method.name}`,
      input: method.input,
      decode:
        options.binaryDecoders?.[method.localName] ?? ((bytes) => fromBinary(method.input, bytes)),
      output: method.output,
      handler,
    });
  }
  return (stream, headers) => {
    const route = routes.get(headers[HTTP2_HEADER_PATH] as string);
    const wire = WIRES.get(headers[HTTP2_HEADER_CONTENT_TYPE] as string);
    if (
      route === undefined ||
      wire === undefined ||
      headers[HTTP2_HEADER_METHOD] !== "POST" ||
      (headers[wire.encodingHeader] !== undefined && headers[wire.encodingHeader] !== "identity") ||
      // connect-node refuses other versions of the Connect protocol.
      (wire.protocol === "connect" &&
        headers["connect-protocol-version"] !== undefined &&
        headers["connect-protocol-version"] !== "1")
    ) {
      return false;
    }
    serveUnary(stream, headers, route, wire, options);
    return true;
  };
}

/**
 * The Call of a fast-path stream. What telemetry does not read on every
 * call (the headers' wrapper, the peer's address, an AbortSignal) is made
 * only when a policy asks for it.
 */
class FastPathCall implements Call, Peer {
  readonly transport = FAST_PATH_TRANSPORT;
  readonly httpVersion = "2";
  caller: Caller | undefined = undefined;
  private callHeaders: CallHeaders | undefined;
  private peerAddress: string | undefined;

  constructor(
    readonly procedure: string,
    readonly protocol: Protocol,
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
  wire: Wire,
  options: UnaryFastPathOptions,
): void {
  const abort = new CallAbort();
  const timeout = headers[wire.timeoutHeader] as string | undefined;
  const deadline = callDeadline(
    wire.timeoutHeader === "grpc-timeout"
      ? parseGrpcTimeout(timeout)
      : parseConnectTimeout(timeout),
    options.maxDeadlineMs,
  );
  const call = new FastPathCall(
    route.procedure,
    wire.protocol,
    headers,
    stream,
    deadline.at,
    abort,
  );
  const accepted = wire.acceptHeader === undefined ? undefined : headers[wire.acceptHeader];
  const compression =
    accepted === undefined
      ? null
      : compressionNegotiate(COMPRESSIONS, null, String(accepted), wire.acceptHeader as string)
          .response;
  let admission: Admission | undefined;
  /** The status the call ended with, once answered or cancelled. */
  let outcome: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let bodyEnded = false;
  let handlerStarted = false;
  /** Whether the handler got the request: connect-node's answers differ slightly from then on. */
  let handlerRan = false;
  /** A problem with the request body, answered once the call is admitted. */
  let requestError: ConnectError | undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  const maxBodyBytes = options.maxRequestBytes + (wire.enveloped ? ENVELOPE_HEADER_BYTES : 0);

  const finish = (
    response: { binary(): Uint8Array; message(): unknown } | undefined,
    error: unknown,
  ) => {
    if (outcome !== undefined) return;
    clearTimeout(timer);
    if (stream.destroyed || stream.closed) {
      outcome = Code.Canceled;
    } else if (error === undefined && response) {
      let bytes: Uint8Array;
      try {
        bytes = wire.json
          ? Buffer.from(
              toJsonString(route.output, create(route.output, response.message() as never)),
            )
          : response.binary();
      } catch (encodeError) {
        finish(undefined, encodeError);
        return;
      }
      sendMessage(stream, wire, bytes, compression);
      outcome = OK;
    } else {
      const status = toStatusError(error, options.logger, route.procedure);
      sendError(stream, wire, status, handlerRan ? compression : undefined);
      outcome = status.code;
      // An answer before the whole body (only a failure can be one).
      if (!bodyEnded) releaseWhenAnswered(stream);
    }
    admission?.finish(outcome);
  };

  const runHandler = () => {
    handlerStarted = true;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    let encoded: Uint8Array | undefined;
    let request: MessageShape<DescMessage>;
    try {
      if (wire.json) {
        request = decodeJson(route.input, body, options.explainUndecodable);
      } else {
        encoded = wire.enveloped ? unwrapEnvelope(body, route.input.typeName) : body;
        request = decodeMessage(route, encoded, options.explainUndecodable);
      }
    } catch (error) {
      finish(undefined, error);
      return;
    }
    handlerRan = true;
    // Inside the policies' scopes (the tracing policy's span), so what the
    // handler does is part of the call. Admitted: `admission` is set.
    (admission as Admission)
      .run(() => route.handler(request, abort, encoded))
      .then(
        (response) => finish(response, undefined),
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

  // Data keeps flowing after an early answer (and is dropped) until the
  // stream is reset, so a client still sending is never stalled on flow
  // control.
  stream.on("data", (chunk: Buffer) => {
    if (outcome !== undefined || requestError) return;
    if (wire.enveloped && received === 0 && chunk.length >= ENVELOPE_HEADER_BYTES) {
      if (chunk.readUInt32BE(1) > options.maxRequestBytes) {
        requestError = requestTooLarge(options.maxRequestBytes);
        return proceed();
      }
    }
    received += chunk.length;
    if (received > maxBodyBytes) {
      requestError = requestTooLarge(options.maxRequestBytes);
      return proceed();
    }
    chunks.push(chunk);
  });
  // "end" and "close" come once each: plain listeners, without the wrapper
  // once() makes per call.
  stream.on("end", () => {
    bodyEnded = true;
    proceed();
  });

  // A client that resets the stream with an error code makes Node emit
  // "error" on it; "close" follows and cancels the call, so nothing is left
  // to do here but keep the process from treating it as unhandled.
  stream.on("error", ignore);

  stream.on("close", () => {
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

function ignore(): void {}

/**
 * Once an answer given before the whole request body arrived is complete on
 * the wire ("finish": its last frame is queued), resets the stream on the
 * next turn of the event loop (resetUnreadRequest), as connect-node's
 * answers are (endUnreadRequestAfter in connect-node-transport.ts): a
 * client uploading the rest of a body the answer no longer needs would
 * otherwise hold its MAX_CONCURRENT_STREAMS slot, and the connection's next
 * streams would be refused.
 */
function releaseWhenAnswered(stream: http2.ServerHttp2Stream): void {
  const reset = () => resetUnreadRequest(stream, () => stream.readableEnded);
  if (stream.writableFinished) setImmediate(reset);
  else stream.once("finish", () => setImmediate(reset));
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
  route: Route,
  bytes: Uint8Array,
  explain: ExplainUndecodable | undefined,
): MessageShape<DescMessage> {
  try {
    return route.decode(bytes);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const { typeName } = route.input;
    throw explain?.(typeName, message) ?? undecodableRequest(typeName);
  }
}

/** A Connect JSON body decoded as connect-node decodes it (invalid UTF-8 is replaced, not refused). */
function decodeJson(
  schema: DescMessage,
  body: Buffer,
  explain: ExplainUndecodable | undefined,
): MessageShape<DescMessage> {
  try {
    return fromJsonString(schema, UTF8.decode(body), JSON_OPTIONS);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw (
      explain?.(schema.typeName, message) ??
      undecodableRequest(schema.typeName, fieldOfJsonError(message))
    );
  }
}

/** `data` in a 5-byte envelope with `flags`. */
function envelope(flags: number, data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + data.byteLength);
  frame[0] = flags;
  frame.writeUInt32BE(data.byteLength, 1);
  frame.set(data, ENVELOPE_HEADER_BYTES);
  return frame;
}

/**
 * Answers with `message`: compressed, as connect-node does, when the client
 * reads a compression and the message is at least COMPRESS_MIN_BYTES.
 */
function sendMessage(
  stream: http2.ServerHttp2Stream,
  wire: Wire,
  message: Uint8Array,
  negotiated: Compression | null,
): void {
  if (negotiated && message.byteLength >= COMPRESS_MIN_BYTES) {
    negotiated.compress(message).then(
      (compressed) => {
        if (!stream.destroyed && !stream.closed) write(stream, wire, compressed, true, negotiated);
      },
      () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
    );
    return;
  }
  write(stream, wire, message, false, negotiated);
}

/**
 * Writes a successful answer, its message compressed with `negotiated` or
 * not. gRPC-Web names the negotiated compression in its headers either
 * way, as connect-node does.
 */
function write(
  stream: http2.ServerHttp2Stream,
  wire: Wire,
  message: Uint8Array,
  compressed: boolean,
  negotiated: Compression | null,
): void {
  switch (wire.protocol) {
    case "grpc":
      stream.respond(
        { [HTTP2_HEADER_STATUS]: 200, [HTTP2_HEADER_CONTENT_TYPE]: wire.contentType },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(envelope(0, message));
      return;
    case "grpc-web": {
      const headers: http2.OutgoingHttpHeaders = {
        [HTTP2_HEADER_STATUS]: 200,
        [HTTP2_HEADER_CONTENT_TYPE]: wire.contentType,
      };
      if (negotiated) headers["grpc-encoding"] = negotiated.name;
      stream.respond(headers);
      stream.end(Buffer.concat([envelope(compressed ? 1 : 0, message), GRPC_WEB_OK_TRAILER]));
      return;
    }
    case "connect": {
      const headers: http2.OutgoingHttpHeaders = {
        [HTTP2_HEADER_STATUS]: 200,
        [HTTP2_HEADER_CONTENT_TYPE]: wire.contentType,
        "content-length": message.byteLength,
      };
      if (compressed && negotiated) headers["content-encoding"] = negotiated.name;
      stream.respond(headers);
      stream.end(message);
      return;
    }
  }
}

/**
 * Answers with `error` as connect-node frames it: gRPC's Trailers-Only, a
 * gRPC-Web trailer frame, Connect's error JSON with its HTTP status. Where
 * the answer comes from connect-node's handler (the call reached it), the
 * gRPC-Web answer names the negotiated compression and Connect's states its
 * length, as connect-node's do; `compression` is undefined for the answers
 * its transport gives before the handler runs.
 */
function sendError(
  stream: http2.ServerHttp2Stream,
  wire: Wire,
  error: ConnectError,
  compression: Compression | null | undefined,
): void {
  if (stream.headersSent) {
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  switch (wire.protocol) {
    case "grpc":
      sendGrpcStatus(stream, error);
      return;
    case "grpc-web": {
      const headers: http2.OutgoingHttpHeaders = {
        [HTTP2_HEADER_STATUS]: 200,
        [HTTP2_HEADER_CONTENT_TYPE]: wire.contentType,
      };
      if (compression) headers["grpc-encoding"] = compression.name;
      stream.respond(headers);
      // With the error's metadata, as setTrailerStatus copies it.
      const trailer = setTrailerStatus(new Headers(), error);
      stream.end(envelope(trailerFlag, trailerSerialize(trailer)));
      return;
    }
    case "connect": {
      const body = errorToJsonBytes(error, undefined);
      const headers: http2.OutgoingHttpHeaders = {
        [HTTP2_HEADER_STATUS]: codeToHttpStatus(error.code),
      };
      error.metadata.forEach((value, key) => {
        headers[key] = value;
      });
      headers[HTTP2_HEADER_CONTENT_TYPE] = "application/json";
      if (compression !== undefined) headers["content-length"] = body.byteLength;
      stream.respond(headers);
      stream.end(body);
      return;
    }
  }
}

/**
 * A gRPC Trailers-Only response: the status in the only HEADERS frame, with
 * grpc-status-details-bin (base64 of a google.rpc.Status holding the code,
 * the message and every detail, the ErrorInfo among them) written by
 * connect's own encoder, so it is byte for byte what connect-node sends,
 * and the error's metadata (such as the rate limit's
 * grpc-retry-pushback-ms) as trailers, as connect-node sends them.
 */
function sendGrpcStatus(stream: http2.ServerHttp2Stream, error: ConnectError): void {
  const headers: http2.OutgoingHttpHeaders = {
    [HTTP2_HEADER_STATUS]: 200,
    [HTTP2_HEADER_CONTENT_TYPE]: GRPC.contentType,
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
