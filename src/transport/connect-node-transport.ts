import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMessage } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  type UniversalHandler,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import { type Call, OK, type StatusCode } from "../pipeline/call.js";
import type { Pipeline } from "../pipeline/pipeline.js";
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
import { binaryResponseToText, textRequestToBinary } from "./grpc-web-text.js";
import { nodeCallHeaders } from "./node-call-headers.js";
import { peerCertificateOf } from "./peer-certificate.js";
import { resetUnreadRequest } from "./unread-request.js";
import {
  errorOfResponse,
  errorResponse,
  grpcWireFormat,
  looksLikeConnect,
  type NotACall,
  unknownMethod,
  type WireFormat,
  wireFormatOf,
} from "./wire-format.js";

/** Options of {@link createConnectNodeTransport}. */
export interface ConnectNodeTransportOptions {
  /** Registers the services (SessionStoreService, health, reflection). */
  readonly routes: (router: ConnectRouter) => void;
  /** The policies every call passes through. */
  readonly pipeline: Pipeline;
  /** Requests whose message is larger fail RESOURCE_EXHAUSTED. */
  readonly maxRequestBytes: number;
  /** MAX_DEADLINE: the deadline of calls (streams too) that set none or a longer one. */
  readonly maxDeadlineMs: number;
  /** Where unexpected failures are logged. */
  readonly logger: Logger;
  /** A more precise answer for some bodies that do not decode (see ExplainUndecodable). */
  readonly explainUndecodable?: ExplainUndecodable;
}

/** A request of the HTTP/1.1 or the HTTP/2 half of the port. */
export type NodeServerRequest = IncomingMessage | Http2ServerRequest;
/** Its response. */
export type NodeServerResponse = ServerResponse | Http2ServerResponse;

/** The name of the connect-node transport, in logs and errors (see Transport). */
export const CONNECT_NODE_TRANSPORT = "connect-node";

/** Whether connect-node got as far as a call's handler, and how the handler ended. */
interface HandlerOutcome {
  reached: boolean;
  code: StatusCode | undefined;
}

const OUTCOME = createContextKey<HandlerOutcome>(
  { reached: false, code: undefined },
  { description: "handler outcome" },
);

/**
 * Every call the gRPC fast path does not take (Connect, gRPC-Web binary and
 * text, compressed gRPC, health, reflection, unknown methods), served by
 * connect-node's router under the one pipeline.
 *
 * Like connect-node's own adapter, it finds the method by path and hands
 * the request to the router's handler; around that it: runs the pipeline
 * before connect-node reads the message, so a rejected call is answered
 * without parsing anything; owns deadlines (capped at MAX_DEADLINE, streams
 * included, and never left to connect-node's own timer); serves
 * gRPC-Web's text variant by translating it to binary; answers requests it
 * cannot serve with a body saying why; and words the failures connect-node
 * raises before the handler runs as the fast path does (a body that does
 * not decode is the caller's INVALID_ARGUMENT, not INTERNAL).
 */
export function createConnectNodeTransport(
  options: ConnectNodeTransportOptions,
): (req: NodeServerRequest, res: NodeServerResponse) => void {
  const router = createConnectRouter({
    interceptors: [observeHandler(options.logger)],
    readMaxBytes: options.maxRequestBytes,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  options.routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, handler]));
  const services = [...new Set(router.handlers.map((handler) => handler.service.typeName))];
  return (req, res) => {
    const handler = handlers.get((req.url ?? "").split("?", 1)[0] ?? "");
    if (!handler) return answerNotACall(req, res, unknownMethod(services));
    const format = wireFormatOf(
      req.method ?? "",
      req.url ?? "/",
      req.headers["content-type"],
      handler.method,
    );
    if (!("protocol" in format)) return answerNotACall(req, res, format);
    serveCall(req, res, handler, format, options).catch((error: unknown) => {
      options.logger.error({ err: error }, "a call failed outside its handler");
    });
  };
}

async function serveCall(
  req: NodeServerRequest,
  res: NodeServerResponse,
  handler: UniversalHandler,
  format: WireFormat,
  options: ConnectNodeTransportOptions,
): Promise<void> {
  const header = req.headers[format.timeoutHeader] as string | undefined;
  const deadline = callDeadline(
    format.timeoutHeader === "grpc-timeout"
      ? parseGrpcTimeout(header)
      : parseConnectTimeout(header),
    options.maxDeadlineMs,
  );
  const controller = new AbortController();
  const timer =
    deadline.timeoutMs === undefined
      ? undefined
      : setTimeout(() => controller.abort(deadlineExceeded(deadline)), deadline.timeoutMs);
  const call: Call = {
    procedure: `${handler.service.typeName}/${handler.method.name}`,
    protocol: format.protocol,
    transport: CONNECT_NODE_TRANSPORT,
    httpVersion: req.httpVersion === "2.0" ? "2" : req.httpVersion,
    headers: nodeCallHeaders(req.headers),
    // Read now: the connection may be gone by the time the call ends.
    peer: {
      address: req.socket?.remoteAddress,
      get certificate() {
        return peerCertificateOf(req.socket);
      },
    },
    deadline: deadline.at,
    signal: controller.signal,
    caller: undefined,
  };
  const closed = new Promise<void>((resolve) => res.once("close", resolve));
  // Sends a response; resolves to whether it reached its end before the
  // client went away.
  const send = (response: UniversalServerResponse) =>
    Promise.race([
      writeResponse(req, res, response).then(
        () => true,
        () => false,
      ),
      closed.then(() => res.writableEnded),
    ]);
  // Every answer passes the last line of defence, which gives an error
  // raised without an ErrorInfo (by connect-node) its reason.
  const answer = async (raised: ConnectError) => {
    const error = toStatusError(raised, options.logger, call.procedure);
    return (await send(errorResponse(format, error))) ? error.code : Code.Canceled;
  };

  const admission = await options.pipeline.start(call);
  let code: StatusCode = Code.Canceled;
  try {
    if (admission.rejection) code = await answer(admission.rejection);
    else if (deadline.error) code = await answer(deadline.error);
    // Inside the policies' scopes (the tracing policy's span), so what
    // the handler does is part of the call.
    else
      code = await admission
        .run(() => runHandler(req, res, handler, format, controller, send, answer, options))
        .catch(
          // A bug here must still answer the client (generic INTERNAL, cause
          // logged), never leave the call hanging.
          (error: unknown) => answer(toStatusError(error, options.logger, call.procedure)),
        );
  } finally {
    clearTimeout(timer);
    admission.finish(code);
  }
}

/**
 * Writes a response with connect-node's writer, and makes sure a request
 * body still arriving when it is complete does not hold an HTTP/2 stream.
 *
 * connect-node answers many bad requests before reading the whole body (a
 * second message for a unary method, a body over MAX_REQUEST_BYTES, a
 * compression it cannot read), and the pipeline rejects calls before
 * anything is read. Over HTTP/2, Node closes a stream answered without its
 * body ever being read, but once anything has read from it (connect-node
 * stops where it found the fault) the unread rest fills the stream's
 * flow-control window and the client can never finish sending: the stream,
 * and its slot of MAX_CONCURRENT_STREAMS, stay open until the client gives
 * up. (Over HTTP/1.1, Node reads and drops the rest of the body to keep
 * the connection, within the listener's bound: see http1-unread-body.ts.)
 */
async function writeResponse(
  req: NodeServerRequest,
  res: NodeServerResponse,
  response: UniversalServerResponse,
): Promise<void> {
  if ("stream" in res) endUnreadRequestAfter(req, res);
  return universalResponseToNodeResponse(response, res);
}

/**
 * Resets the stream once the response is complete on the wire if the
 * request body has not ended by then (resetUnreadRequest).
 *
 * When: Node's compatibility layer always responds with waitForTrailers,
 * and sends the trailers (or an empty END_STREAM frame) from its own
 * "wantTrailers" listener, registered when the response was created, so
 * before this one. Neither the response's "finish" (the compatibility layer
 * emits it only when the stream closes, the very thing that never
 * happens here) nor the stream's (it comes before the trailers) would do,
 * nor waiting for connect-node's writer to resolve: over HTTP/2 it waits
 * for an "end" event Http2ServerResponse never emits, so it resolves only
 * through the stream closing (see `send` in serveCall). connect-node has
 * stopped reading, and may have destroyed the request, after which Node's
 * compatibility layer pauses the stream at every chunk.
 */
function endUnreadRequestAfter(req: NodeServerRequest, res: Http2ServerResponse): void {
  const { stream } = res;
  // "wantTrailers" is emitted from inside nghttp2's send loop, where a
  // reset submitted is not sent: the next turn of the event loop is.
  stream.once("wantTrailers", () =>
    setImmediate(() => resetUnreadRequest(stream, () => req.complete)),
  );
}

async function runHandler(
  req: NodeServerRequest,
  res: NodeServerResponse,
  handler: UniversalHandler,
  format: WireFormat,
  controller: AbortController,
  send: (response: UniversalServerResponse) => Promise<boolean>,
  answer: (error: ConnectError) => Promise<StatusCode>,
  options: ConnectNodeTransportOptions,
): Promise<StatusCode> {
  const outcome: HandlerOutcome = { reached: false, code: undefined };
  let request: ReturnType<typeof universalRequestFromNodeRequest>;
  try {
    request = universalRequestFromNodeRequest(
      req,
      res,
      undefined,
      createContextValues().set(OUTCOME, outcome),
    );
  } catch {
    // connect-node needs the request's authority (:authority or Host).
    return answer(
      statusError("PROTOCOL_ERROR", "the request names no authority (host)", {
        header: ":authority",
      }),
    );
  }
  // Over HTTP/1.1, a body connect-node stops reading halfway (a message
  // over MAX_REQUEST_BYTES, a second one) must stay readable: a for-await
  // loop left early destroys its stream, and a request destroyed before
  // its end stalls its connection (see http1-unread-body.ts).
  if (!("stream" in req)) request.body = req.iterator({ destroyOnReturn: false });
  // The client going away cancels the call. (The signal also fires once the
  // response is complete, which cancels nothing.)
  const clientSignal = request.signal;
  clientSignal.addEventListener(
    "abort",
    () => {
      if (res.writableEnded) return;
      const reason: unknown = clientSignal.reason;
      controller.abort(
        reason instanceof ConnectError
          ? reason
          : statusError("CANCELLED", "the client cancelled the call"),
      );
    },
    { once: true },
  );
  // The deadline is this transport's (see serveCall): connect-node must not
  // start a timer of its own.
  request.header.delete(format.timeoutHeader);
  request.signal = controller.signal;
  if (format.text) textRequestToBinary(request);

  let response: UniversalServerResponse;
  try {
    response = await handler(request);
  } catch (error) {
    // connect-node failed to write its own answer to a request it could not
    // read: the gRPC and gRPC-Web status message is URI-encoded, and the
    // JSON decoder's message can quote half a surrogate pair of the body,
    // which encodeURIComponent refuses. The body did not decode. Anything
    // else is not the request's fault (logged INTERNAL by the caller).
    if (outcome.reached || !(error instanceof URIError)) throw error;
    return answer(undecodableRequest(handler.method.input.typeName));
  }
  if (!outcome.reached) {
    // connect-node failed the call before its handler: a problem with the
    // request itself, worded as the fast path words it.
    const error =
      (await errorOfResponse(format, response)) ?? statusError("INTERNAL", "internal error");
    return answer(requestError(error, handler, options));
  }
  return (await send(format.text ? binaryResponseToText(response) : response))
    ? (outcome.code ?? Code.Internal)
    : Code.Canceled;
}

/**
 * What to answer for a failure connect-node raised before the handler ran:
 * an oversized message names the setting; a message that does not decode
 * is INVALID_ARGUMENT naming the type (connect-node says INTERNAL for
 * protobuf, and its JSON decoder's message can quote the request: only the
 * name of the field at fault is kept from it); the rest, such as a missing
 * message or an unknown compression, as connect-node words it.
 */
function requestError(
  error: ConnectError,
  handler: UniversalHandler,
  options: ConnectNodeTransportOptions,
): ConnectError {
  switch (error.code) {
    case Code.ResourceExhausted:
      return requestTooLarge(options.maxRequestBytes);
    case Code.Internal:
    case Code.InvalidArgument: {
      if (error.rawMessage.startsWith("unsupported content-type")) {
        return statusError("PROTOCOL_ERROR", error.rawMessage, { header: "content-type" });
      }
      const { typeName } = handler.method.input;
      const explained = options.explainUndecodable?.(typeName, error.rawMessage);
      return explained ?? undecodableRequest(typeName, fieldOfJsonError(error.rawMessage));
    }
    default:
      return error;
  }
}

/**
 * Marks the call as having reached its handler, records how the handler
 * ended (for streams, when the stream ends) and turns anything that is not
 * a ConnectError into a logged, generic INTERNAL.
 */
function observeHandler(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const outcome = req.contextValues.get(OUTCOME);
    outcome.reached = true;
    const procedure = `${req.service.typeName}/${req.method.name}`;
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (error) {
      const status = toStatusError(inputError(error, req.method.input), logger, procedure);
      outcome.code = status.code;
      throw status;
    }
    if (!res.stream) {
      outcome.code = OK;
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let code: StatusCode = Code.Canceled;
        try {
          yield* messages;
          code = OK;
        } catch (error) {
          const status = toStatusError(inputError(error, req.method.input), logger, procedure);
          code = status.code;
          throw status;
        } finally {
          outcome.code = code;
        }
      })(),
    };
  };
}

/**
 * A request message of a client- or bidi-streaming call that does not
 * decode is read while the handler runs (reflection reads its requests one
 * by one). connect-node raises a binary one as INTERNAL ("parse binary:
 * ...", or a message flagged compressed without a compression named) and a
 * JSON one as INVALID_ARGUMENT quoting the decoder, whose message can quote
 * the request (and half a surrogate pair of it, which the gRPC status
 * cannot carry). Either is the client's mistake, answered as the fast path
 * answers an undecodable message: INVALID_ARGUMENT naming the type (and the
 * field, when the decoder named one). Any other error is passed on as it is.
 */
function inputError(error: unknown, input: DescMessage): unknown {
  if (!(error instanceof ConnectError)) return error;
  const message = error.rawMessage;
  if (error.code === Code.Internal) {
    if (message.startsWith("parse binary: ")) return undecodableRequest(input.typeName);
    // A message flagged compressed on a call that named no compression.
    if (message === "received compressed envelope, but do not know how to decompress") {
      return undecodableRequest(input.typeName);
    }
  }
  // connect-node's JSON parse: JSON.parse's SyntaxError, or the protobuf
  // JSON decoder's "cannot decode ...", as the cause.
  if (
    error.code === Code.InvalidArgument &&
    (error.cause instanceof SyntaxError || message.startsWith("cannot decode "))
  ) {
    return undecodableRequest(input.typeName, fieldOfJsonError(message));
  }
  return error;
}

/**
 * Answers a request that is no call (unknown path, unsupported content type
 * or HTTP method) with a body that says what is wrong and what is accepted:
 * a gRPC or gRPC-Web status for those clients, Connect's error JSON for
 * Connect-looking requests, plain text for anything else (curl, browsers).
 */
function answerNotACall(req: NodeServerRequest, res: NodeServerResponse, notACall: NotACall): void {
  const { headers } = req;
  const contentType = headers["content-type"];
  const grpc = grpcWireFormat(contentType);
  let response: UniversalServerResponse;
  if (grpc) {
    response = errorResponse(grpc, statusError("UNIMPLEMENTED", notACall.message));
  } else if (looksLikeConnect(contentType, headers["connect-protocol-version"] !== undefined)) {
    const error =
      notACall.status === 415
        ? statusError("PROTOCOL_ERROR", notACall.message, notACall.fault)
        : statusError("UNIMPLEMENTED", notACall.message);
    response = {
      status: notACall.status,
      header: new Headers({ "content-type": "application/json" }),
      body: createAsyncIterable([errorToJsonBytes(error, {})]),
    };
  } else {
    response = {
      status: notACall.status,
      header: new Headers({ "content-type": "text/plain; charset=utf-8" }),
      body: createAsyncIterable([Buffer.from(`${notACall.message}\n`, "utf8")]),
    };
  }
  writeResponse(req, res, response).catch(() => {});
}
