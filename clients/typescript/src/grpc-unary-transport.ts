/**
 * The SDK's transport for protocol "grpc": unary calls on a small client
 * written straight against node:http2 streams, streaming calls through
 * connect-node's gRPC transport.
 *
 * Why: connect-es runs every unary call through async iterables, web
 * Headers, AbortControllers, an interceptor chain and envelope helpers;
 * for SessionStore's small calls that plumbing cost the client more than
 * twice the CPU of an @grpc/grpc-js client doing the same calls (`npm run
 * bench`, section "Client CPU per call"). The server met the same cost
 * and answered it with its own fast path (src/transport/grpc-unary-fast-path.ts);
 * this is the client's counterpart. A unary call here is one HTTP/2
 * stream, a few callbacks and, unless the call fails, no web Headers at
 * all, while the connect-es client on top (createClient) sees the same
 * Transport it always did: the same requests on the wire, the same
 * responses, the same ConnectErrors, built by connect's own helpers
 * wherever a response is not a plain success.
 */
import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type CallOptions,
  Code,
  ConnectError,
  type ContextValues,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  codeFromHttpStatus,
  findTrailerError,
  parseContentType,
  validateTrailer,
} from "@connectrpc/connect/protocol-grpc";
import { type BearerTokenSource, bearerAuthorization } from "./bearer-token.js";
import { Http2Connection } from "./http2-connection.js";

/** Options of {@link createGrpcUnaryTransport}. */
export interface GrpcUnaryTransportOptions {
  /** The server's base URL, as connect-node's transports take it. */
  readonly baseUrl: string;
  /** Sent as `authorization: Bearer <token>` on every unary call that sets none itself. */
  readonly token?: BearerTokenSource | undefined;
  /** node:http2 connect options: TLS (ca, cert, key) for an https:// baseUrl. */
  readonly nodeOptions?: http2.SecureClientSessionOptions | undefined;
  /**
   * The transport of streaming calls (WatchUser, WatchSession, Health's
   * Watch): connect-node's gRPC transport with the same settings and
   * token, on a connection of its own.
   */
  readonly streams: Transport;
  /**
   * A response message larger than this fails RESOURCE_EXHAUSTED, as
   * connect's `readMaxBytes` does; by default, the most a gRPC frame can
   * say (4 GiB - 1), connect's default too.
   */
  readonly readMaxBytes?: number | undefined;
}

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
const ENVELOPE_HEADER_BYTES = 5;
const CONTENT_TYPE = "application/grpc+proto";
const MAX_READ_BYTES = 0xffffffff;
/** gRPC's user agent form (grpc-<language>/<version>), naming this package. */
const USER_AGENT = "grpc-sessionstore-client-ts/0.1.0";

/**
 * A Transport for createClient whose unary calls speak gRPC (binary
 * protobuf, no compression) on one node:http2 connection of their own,
 * opened lazily, reopened after it closes or is sent GOAWAY, and left
 * unref'd while no call is in flight, so an idle client never keeps the
 * process alive. Streaming calls go to `options.streams`.
 *
 * It accepts no compressed responses, and says so by sending no
 * grpc-accept-encoding: a gRPC server compresses only what its client
 * accepts (SessionStore's gRPC fast path never does).
 *
 * @throws TypeError when `token` is a string that is no bearer token.
 */
export function createGrpcUnaryTransport(options: GrpcUnaryTransportOptions): Transport {
  const url = new URL(options.baseUrl);
  const connection = new Http2Connection({
    origin: url.origin,
    nodeOptions: options.nodeOptions,
  });
  const authorization =
    options.token === undefined ? undefined : bearerAuthorization(options.token);
  const readMaxBytes = options.readMaxBytes ?? MAX_READ_BYTES;
  // As connect's createMethodUrl: the method's path after the baseUrl's.
  const pathPrefix = url.pathname.replace(/\/?$/, "");
  const paths = new Map<DescMethodUnary, string>();
  const pathOf = (method: DescMethodUnary): string => {
    let path = paths.get(method);
    if (path === undefined) {
      path = `${pathPrefix}/${method.parent.typeName}/${method.name}`;
      paths.set(method, path);
    }
    return path;
  };

  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallOptions["headers"],
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      return new Promise((resolve, reject) => {
        const call = new UnaryCall<I, O>(method, readMaxBytes, resolve, reject);
        // As connect: no timeout, or one of <= 0, means no deadline.
        const deadlineMs = timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs : undefined;
        if (!call.watch(signal, deadlineMs)) return;
        let headers: http2.OutgoingHttpHeaders;
        let frame: Buffer;
        try {
          headers = requestHeaders(pathOf(method as DescMethodUnary), deadlineMs, header);
          frame = encodeRequest(method.input, input);
        } catch (error) {
          call.fail(ConnectError.from(error, Code.Internal));
          return;
        }
        if (authorization === undefined || headers.authorization !== undefined) {
          call.send(connection, headers, frame);
          return;
        }
        // A fixed token's value, or a promise of a function's (which rejects, never throws).
        const value = authorization();
        if (typeof value === "string") {
          headers.authorization = value;
          call.send(connection, headers, frame);
        } else {
          value.then(
            (resolved) => {
              headers.authorization = resolved;
              call.send(connection, headers, frame);
            },
            (error: unknown) => call.fail(ConnectError.from(error)),
          );
        }
      });
    },

    stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: CallOptions["headers"],
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      return options.streams.stream(method, signal, timeoutMs, header, input, contextValues);
    },
  };
}

/**
 * The request's HTTP/2 headers, as connect's gRPC transport sends them
 * (requestHeader of @connectrpc/connect/protocol-grpc): the caller's
 * headers (names lowercased, validated by Headers), then the protocol's,
 * which win; the caller's user-agent is kept.
 */
function requestHeaders(
  path: string,
  deadlineMs: number | undefined,
  header: CallOptions["headers"],
): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path };
  if (header !== undefined) {
    new Headers(header).forEach((value, name) => {
      headers[name] = value;
    });
  }
  headers["content-type"] = CONTENT_TYPE;
  headers["user-agent"] ??= USER_AGENT;
  if (deadlineMs !== undefined) headers["grpc-timeout"] = `${deadlineMs}m`;
  headers.te = "trailers";
  return headers;
}

/** The request message in its gRPC envelope (uncompressed). */
function encodeRequest<I extends DescMessage>(schema: I, input: MessageInitShape<I>): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = toBinary(schema, create(schema, input));
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new ConnectError(`serialize binary: ${message}`, Code.Internal);
  }
  const frame = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + bytes.byteLength);
  frame[0] = 0;
  frame.writeUInt32BE(bytes.byteLength, 1);
  frame.set(bytes, ENVELOPE_HEADER_BYTES);
  return frame;
}

/**
 * One unary call: its stream, deadline and cancellation, and what came
 * back. It settles once; whatever settles it first (the response, an
 * error, the deadline, the caller's signal) wins, and a stream still open
 * then is reset, with CANCEL when the client gave up.
 */
class UnaryCall<I extends DescMessage, O extends DescMessage> {
  private settled = false;
  private stream: http2.ClientHttp2Stream | undefined;
  private timer: NodeJS.Timeout | undefined;
  private signal: AbortSignal | undefined;
  private session: http2.Http2Session | undefined;
  private ended = false;
  private headers: http2.IncomingHttpHeaders | undefined;
  private trailers: http2.IncomingHttpHeaders | undefined;
  private readonly chunks: Buffer[] = [];

  constructor(
    private readonly method: DescMethodUnary<I, O>,
    private readonly readMaxBytes: number,
    private readonly resolve: (response: UnaryResponse<I, O>) => void,
    private readonly reject: (error: ConnectError) => void,
  ) {}

  /**
   * Starts the deadline and listens to the caller's signal; false (the call
   * failed, nothing sent) when the signal has already aborted.
   */
  watch(signal: AbortSignal | undefined, deadlineMs: number | undefined): boolean {
    if (signal !== undefined) {
      if (signal.aborted) {
        this.fail(ConnectError.from(signal.reason, Code.Canceled));
        return false;
      }
      this.signal = signal;
      signal.addEventListener("abort", this.onAbort);
    }
    if (deadlineMs !== undefined) {
      this.timer = setTimeout(this.onDeadline, deadlineMs);
    }
    return true;
  }

  send(connection: Http2Connection, headers: http2.OutgoingHttpHeaders, frame: Buffer): void {
    if (this.settled) return;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = connection.request(headers);
    } catch (error) {
      this.fail(errorFromNode(error));
      return;
    }
    this.stream = stream;
    this.session = stream.session;
    stream.on("response", (headers) => this.onResponse(headers));
    stream.on("data", (chunk: Buffer) => this.chunks.push(chunk));
    stream.on("trailers", (trailers) => {
      this.trailers = trailers;
    });
    stream.on("end", () => this.onEnd());
    stream.on("error", (error) => this.fail(errorFromNode(error)));
    stream.on("close", () => this.onClose());
    stream.end(frame);
  }

  fail(error: ConnectError): void {
    if (this.settled) return;
    this.settle();
    const stream = this.stream;
    if (stream !== undefined && !stream.closed) {
      stream.close(
        error.code === Code.Canceled || error.code === Code.DeadlineExceeded
          ? NGHTTP2_CANCEL
          : NGHTTP2_INTERNAL_ERROR,
      );
    }
    this.reject(error);
  }

  private settle(): void {
    this.settled = true;
    clearTimeout(this.timer);
    this.signal?.removeEventListener("abort", this.onAbort);
  }

  private readonly onAbort = () => {
    this.fail(ConnectError.from((this.signal as AbortSignal).reason, Code.Canceled));
  };

  private readonly onDeadline = () => {
    this.fail(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  };

  /** The response headers: failures that need no body fail at once, as in connect. */
  private onResponse(headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void {
    this.headers = headers;
    const status = headers[":status"] ?? 0;
    if (status !== 200) {
      this.fail(
        new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status), webHeaders(headers)),
      );
      return;
    }
    const contentType = headers["content-type"];
    if (contentType !== CONTENT_TYPE && parseContentType(contentType ?? null) === undefined) {
      this.fail(new ConnectError(`unsupported content type ${contentType ?? null}`, Code.Unknown));
      return;
    }
    const encoding = headerValue(headers["grpc-encoding"]);
    if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
      // Nothing was accepted (no grpc-accept-encoding), so nothing compressed can be read.
      this.fail(
        new ConnectError(
          `unsupported response encoding "${encoding}"`,
          Code.Internal,
          webHeaders(headers),
        ),
      );
    }
  }

  /**
   * The body ended. With trailers (or a Trailers-Only response) the
   * response is complete; without, it may be a stream cut short by its
   * connection, which only its close tells apart.
   */
  private onEnd(): void {
    this.ended = true;
    const headers = this.headers;
    if (headers !== undefined && (this.trailers !== undefined || "grpc-status" in headers)) {
      this.complete(headers);
    }
  }

  /**
   * The stream closed. After a response that is a no-op (settled); before,
   * the stream was reset or its connection died.
   */
  private onClose(): void {
    if (this.settled) return;
    const stream = this.stream as http2.ClientHttp2Stream;
    const session = this.session;
    if (session === undefined || session.destroyed) {
      // connect-node reports these as CANCELED (the reset code Node gives
      // the session's streams); the server did not cancel anything: the
      // connection is gone, so the call may be tried again.
      this.fail(
        new ConnectError(
          "the connection to the server closed before the call ended",
          Code.Unavailable,
        ),
      );
      return;
    }
    if (this.ended && this.headers !== undefined && !stream.rstCode) {
      this.complete(this.headers);
      return;
    }
    const rstCode = stream.rstCode ?? 0;
    this.fail(
      errorFromResetCode(rstCode) ??
        new ConnectError(
          `http/2 stream closed with error code 0x${rstCode.toString(16)} before the response ended`,
          Code.Internal,
        ),
    );
  }

  /** The whole response is in: its message, or its failure. */
  private complete(headers: http2.IncomingHttpHeaders): void {
    if (this.settled) return;
    let message: MessageShape<O> | undefined;
    try {
      message = decodeResponse(this.method.output, this.chunks, this.readMaxBytes);
    } catch (error) {
      this.fail(ConnectError.from(error, Code.Internal));
      return;
    }
    const trailers = this.trailers;
    if (
      message !== undefined &&
      trailers?.["grpc-status"] === "0" &&
      trailers["grpc-status-details-bin"] === undefined &&
      headers["grpc-status"] === undefined
    ) {
      this.settle();
      this.resolve(new GrpcUnaryResponse(this.method, message, headers, trailers));
      return;
    }
    this.fail(unsuccessful(headers, trailers, message !== undefined));
  }
}

/**
 * The response message of a unary body: its one enveloped message, or
 * undefined when it has none (a Trailers-Only response).
 *
 * @throws ConnectError as connect's transport fails for the same body:
 *   RESOURCE_EXHAUSTED for a message over readMaxBytes, INTERNAL for a
 *   compressed or undecodable one, UNIMPLEMENTED for a second message,
 *   INVALID_ARGUMENT for a truncated envelope.
 */
function decodeResponse<O extends DescMessage>(
  schema: O,
  chunks: readonly Buffer[],
  readMaxBytes: number,
): MessageShape<O> | undefined {
  if (chunks.length === 0) return undefined;
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  let message: MessageShape<O> | undefined;
  let offset = 0;
  while (body.length - offset >= ENVELOPE_HEADER_BYTES) {
    const flags = body[offset] as number;
    const size = body.readUInt32BE(offset + 1);
    if (size > readMaxBytes) {
      throw new ConnectError(
        `message size ${size} is larger than configured readMaxBytes ${readMaxBytes}`,
        Code.ResourceExhausted,
      );
    }
    const start = offset + ENVELOPE_HEADER_BYTES;
    if (body.length - start < size) break;
    offset = start + size;
    if ((flags & 1) === 1) {
      throw new ConnectError(
        "received compressed envelope, but do not know how to decompress",
        Code.Internal,
      );
    }
    let parsed: MessageShape<O>;
    try {
      parsed = fromBinary(schema, body.subarray(start, offset));
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConnectError(`parse binary: ${reason}`, Code.Internal);
    }
    if (message !== undefined) {
      throw new ConnectError(
        "protocol error: received extra output message for unary method",
        Code.Unimplemented,
      );
    }
    message = parsed;
  }
  if (offset < body.length) {
    throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
  }
  return message;
}

/**
 * The error of a response that ended without success: a status in the
 * trailers or in a Trailers-Only response's headers (code, message,
 * details from grpc-status-details-bin, and headers and trailers as
 * metadata), or a protocol error. Decided by connect's own helpers, in
 * connect's order, so every such response fails exactly as it would
 * through connect-node's transport.
 */
function unsuccessful(
  nodeHeaders: http2.IncomingHttpHeaders,
  nodeTrailers: http2.IncomingHttpHeaders | undefined,
  hasMessage: boolean,
): ConnectError {
  const headers = webHeaders(nodeHeaders);
  const trailers = nodeTrailers === undefined ? new Headers() : webHeaders(nodeTrailers);
  const headerError = findTrailerError(headers);
  try {
    validateTrailer(trailers, headers);
  } catch (error) {
    return ConnectError.from(error);
  }
  if (!hasMessage) {
    return (
      headerError ??
      new ConnectError(
        "protocol error: missing output message for unary method",
        trailers.has("grpc-status") ? Code.Unimplemented : Code.Unknown,
      )
    );
  }
  return new ConnectError(
    "protocol error: received output message for unary method with error status",
    Code.Unknown,
  );
}

/**
 * A successful response. Its headers and trailers become web Headers only
 * when read (the client reads them for onHeader and onTrailer), so calls
 * that do not ask pay nothing for them.
 */
class GrpcUnaryResponse<I extends DescMessage, O extends DescMessage>
  implements UnaryResponse<I, O>
{
  readonly stream = false;
  private webHeader: Headers | undefined;
  private webTrailer: Headers | undefined;

  constructor(
    readonly method: DescMethodUnary<I, O>,
    readonly message: MessageShape<O>,
    private readonly nodeHeaders: http2.IncomingHttpHeaders,
    private readonly nodeTrailers: http2.IncomingHttpHeaders,
  ) {}

  get service(): DescService {
    return this.method.parent;
  }

  get header(): Headers {
    this.webHeader ??= webHeaders(this.nodeHeaders);
    return this.webHeader;
  }

  get trailer(): Headers {
    this.webTrailer ??= webHeaders(this.nodeTrailers);
    return this.webTrailer;
  }
}

/** A header's value as web Headers' get() reads it: repeated values joined. */
function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

/** node:http2 headers as web Headers, pseudo-headers left out, as connect-node converts them. */
function webHeaders(nodeHeaders: http2.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(nodeHeaders)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const each of value) headers.append(name, each);
    else headers.append(name, String(value));
  }
  return headers;
}

/** Node error codes that mean the server could not be reached at all. */
const UNREACHABLE = new Set(["ECONNREFUSED", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN"]);
/** Node error codes that mean the stream or connection was cut. */
const CUT = new Set(["ERR_STREAM_DESTROYED", "ERR_HTTP2_INVALID_STREAM", "ECONNRESET"]);

/**
 * A ConnectError for an error of node:http2 or the socket under it, coded
 * as connect-node codes it: UNAVAILABLE when the server cannot be reached,
 * ABORTED when the connection was cut, INTERNAL otherwise (a failed TLS
 * handshake among them, with OpenSSL's reason as the message). Node's
 * messages name hosts and reasons, never the request's headers, so no
 * token can show up in them.
 */
function errorFromNode(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  // A call made while the connection was being set up fails with Node's
  // "pending stream has been canceled", caused by what failed the
  // connection: that cause is the error, as connect-node (which waits for
  // the connection before it opens a stream) reports it.
  const reason =
    (error as NodeJS.ErrnoException | undefined)?.code === "ERR_HTTP2_STREAM_CANCEL" &&
    error instanceof Error &&
    error.cause !== undefined
      ? error.cause
      : error;
  let code = Code.Internal;
  for (let cause = reason, depth = 0; cause instanceof Error && depth < 10; depth++) {
    const nodeCode = (cause as NodeJS.ErrnoException).code;
    if (nodeCode === "ERR_STREAM_WRITE_AFTER_END" || (nodeCode && CUT.has(nodeCode))) {
      code = Code.Aborted;
      break;
    }
    if (nodeCode && UNREACHABLE.has(nodeCode)) {
      code = Code.Unavailable;
      break;
    }
    cause = cause.cause;
  }
  return ConnectError.from(reason, code);
}

/** HTTP/2 error codes (RFC 9113 section 7) by number, for messages. */
const H2_ERROR_NAMES: Readonly<Record<number, string>> = {
  1: "PROTOCOL_ERROR",
  2: "INTERNAL_ERROR",
  3: "FLOW_CONTROL_ERROR",
  4: "SETTINGS_TIMEOUT",
  6: "FRAME_SIZE_ERROR",
  7: "REFUSED_STREAM",
  8: "CANCEL",
  9: "COMPRESSION_ERROR",
  10: "CONNECT_ERROR",
  11: "ENHANCE_YOUR_CALM",
  12: "INADEQUATE_SECURITY",
  13: "HTTP_1_1_REQUIRED",
};

/**
 * The error a stream reset with `rstCode` means, mapped as gRPC's
 * PROTOCOL-HTTP2.md and connect-node map it; undefined for NO_ERROR and
 * STREAM_CLOSED, which say nothing about the call.
 */
function errorFromResetCode(rstCode: number | undefined): ConnectError | undefined {
  const name = rstCode === undefined ? undefined : H2_ERROR_NAMES[rstCode];
  if (rstCode === undefined || name === undefined) return undefined;
  const code =
    rstCode === 7
      ? Code.Unavailable
      : rstCode === 8
        ? Code.Canceled
        : rstCode === 11
          ? Code.ResourceExhausted
          : rstCode >= 12
            ? Code.PermissionDenied
            : Code.Internal;
  return new ConnectError(
    `http/2 stream closed with error code ${name} (0x${rstCode.toString(16)})`,
    code,
  );
}
