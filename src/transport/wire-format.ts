import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  createAsyncIterable,
  encodeEnvelope,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeFromHttpStatus,
  codeToHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
  parseContentType as parseConnectContentType,
} from "@connectrpc/connect/protocol-connect";
import {
  findTrailerError,
  parseContentType as parseGrpcContentType,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  parseContentType as parseGrpcWebContentType,
  trailerFlag,
  trailerParse,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";
import type { Protocol } from "../pipeline/call.js";
import { base64Chunk } from "./grpc-web-text.js";

/**
 * How one request is framed on the wire, read from its method, content type
 * and query as connect-node reads them: the facts the connect-node
 * transport needs to run the pipeline before connect-node parses anything,
 * and to answer in the right framing when the call fails before its
 * handler runs.
 */
export interface WireFormat {
  readonly protocol: Protocol;
  /** Protobuf binary (true) or JSON. */
  readonly binary: boolean;
  /** gRPC-Web with base64 bodies (application/grpc-web-text), which connect-node does not serve itself. */
  readonly text: boolean;
  /** The Connect streaming framing (application/connect+...). */
  readonly stream: boolean;
  /** The header carrying the caller's timeout. */
  readonly timeoutHeader: "grpc-timeout" | "connect-timeout-ms";
}

/** Why a request is no call: the HTTP status and what to tell the client. */
export interface NotACall {
  readonly status: 404 | 405 | 415;
  readonly message: string;
  /** For a 415, the header or query parameter at fault (the ErrorInfo's metadata). */
  readonly fault?: { readonly header: string } | { readonly parameter: string };
}

/** What the port accepts, for answers to requests it cannot serve. */
const ACCEPTED =
  "POST with content-type application/json or application/proto (Connect), " +
  "application/grpc (gRPC), or application/grpc-web or application/grpc-web-text (gRPC-Web)";

/**
 * The wire format of a request for `method`, or why it is no call (415 or
 * 405, as connect-node would answer).
 */
export function wireFormatOf(
  httpMethod: string,
  url: string,
  contentType: string | undefined,
  method: DescMethod,
): WireFormat | NotACall {
  const unary = method.methodKind === "unary";
  if (httpMethod === "GET") {
    // Connect serves side-effect-free unary methods as GET with the message in the query.
    const encoding = new URL(url, "http://localhost").searchParams.get("encoding");
    if (!unary || method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) {
      return { status: 405, message: `${method.name} is not served over GET; ${ACCEPTED}` };
    }
    if (encoding !== "json" && encoding !== "proto") {
      return {
        status: 415,
        message: "a Connect GET request needs encoding=json or encoding=proto",
        fault: { parameter: "encoding" },
      };
    }
    return connect(encoding === "proto", false);
  }
  if (httpMethod !== "POST")
    return { status: 405, message: `method ${httpMethod} is not served; ${ACCEPTED}` };
  const grpc = grpcWireFormat(contentType);
  if (grpc) return grpc;
  const connectType = parseConnectContentType(contentType ?? null);
  if (connectType && connectType.stream !== unary)
    return connect(connectType.binary, connectType.stream);
  return {
    status: 415,
    message:
      contentType === undefined
        ? `missing content-type; ${ACCEPTED}`
        : `unsupported content-type for ${method.name}; ${ACCEPTED}`,
    fault: { header: "content-type" },
  };
}

/** The wire format of a gRPC or gRPC-Web content type; undefined for any other. */
export function grpcWireFormat(contentType: string | undefined): WireFormat | undefined {
  const grpcWeb = parseGrpcWebContentType(contentType ?? null);
  if (grpcWeb) {
    return {
      protocol: "grpc-web",
      binary: grpcWeb.binary,
      text: grpcWeb.text,
      stream: false,
      timeoutHeader: "grpc-timeout",
    };
  }
  const grpc = parseGrpcContentType(contentType ?? null);
  if (!grpc) return undefined;
  return {
    protocol: "grpc",
    binary: grpc.binary,
    text: false,
    stream: false,
    timeoutHeader: "grpc-timeout",
  };
}

function connect(binary: boolean, stream: boolean): WireFormat {
  return { protocol: "connect", binary, text: false, stream, timeoutHeader: "connect-timeout-ms" };
}

/** Whether the request says it speaks Connect (so an answer in Connect's error JSON is understood). */
export function looksLikeConnect(contentType: string | undefined, connectHeader: boolean): boolean {
  return connectHeader || parseConnectContentType(contentType ?? null) !== undefined;
}

/** The answer to a request for a path no service serves. */
export function unknownMethod(services: readonly string[]): NotACall {
  return {
    status: 404,
    message: `unknown method: call /<service>/<method> of ${services.join(", ")}; ${ACCEPTED}`,
  };
}

/**
 * A complete response carrying `error` in the request's framing, exactly as
 * connect-node frames it: gRPC Trailers-Only, a gRPC-Web trailer frame
 * (base64 for the text variant), Connect's error JSON with its HTTP status,
 * or a Connect end-of-stream frame.
 */
export function errorResponse(format: WireFormat, error: ConnectError): UniversalServerResponse {
  const suffix = format.binary ? "proto" : "json";
  switch (format.protocol) {
    case "grpc":
      return {
        status: 200,
        header: setTrailerStatus(
          new Headers({ "content-type": `application/grpc+${suffix}` }),
          error,
        ),
      };
    case "grpc-web": {
      const frame = encodeEnvelope(
        trailerFlag,
        trailerSerialize(setTrailerStatus(new Headers(), error)),
      );
      return {
        status: 200,
        header: new Headers({
          "content-type": `application/grpc-web${format.text ? "-text" : ""}+${suffix}`,
        }),
        body: createAsyncIterable([format.text ? base64Chunk(frame) : frame]),
      };
    }
    case "connect": {
      const header = new Headers(error.metadata);
      if (format.stream) {
        header.set("content-type", `application/connect+${suffix}`);
        const json = endStreamToJson(new Headers(), error, undefined);
        const frame = encodeEnvelope(endStreamFlag, Buffer.from(JSON.stringify(json), "utf8"));
        return { status: 200, header, body: createAsyncIterable([frame]) };
      }
      header.set("content-type", "application/json");
      return {
        status: codeToHttpStatus(error.code),
        header,
        body: createAsyncIterable([errorToJsonBytes(error, undefined)]),
      };
    }
  }
}

/**
 * The error a response in `format` carries, for responses connect-node
 * wrote before any handler ran (small and complete: read whole). Undefined
 * when it carries none.
 */
export async function errorOfResponse(
  format: WireFormat,
  response: UniversalServerResponse,
): Promise<ConnectError | undefined> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of response.body ?? []) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const fallback =
    response.status === 505
      ? // connect-node serves bidi streams over HTTP/2 only, and says so with
        // HTTP 505 alone, which gRPC and gRPC-Web clients would read as UNKNOWN.
        new ConnectError(
          "protocol error: this method streams in both directions, which needs HTTP/2",
          Code.Unimplemented,
        )
      : response.status === 415
        ? // Only Connect serves GET, so connect-node refuses a GET of any other
          // content type with a bare 415.
          new ConnectError(`unsupported content-type; ${ACCEPTED}`, Code.InvalidArgument)
        : new ConnectError("request failed", codeFromHttpStatus(response.status));
  // Connect unary errors are HTTP errors with a JSON body; every other
  // framing carries its status with HTTP 200.
  if (format.protocol === "connect" && !format.stream) {
    if (response.status === 200) return undefined;
    // errorFromJsonBytes throws its fallback when the body is not JSON
    // (connect-node's bare 415 and 505 have no body).
    try {
      return errorFromJsonBytes(body, undefined, fallback);
    } catch {
      return fallback;
    }
  }
  if (response.status !== 200) return fallback;
  switch (format.protocol) {
    case "grpc":
      return (
        findTrailerError(response.trailer ?? new Headers()) ??
        findTrailerError(response.header ?? new Headers())
      );
    case "grpc-web": {
      const trailer = envelopes(body).find((e) => (e.flags & trailerFlag) === trailerFlag);
      return trailer ? findTrailerError(trailerParse(trailer.data)) : undefined;
    }
    case "connect": {
      const end = envelopes(body).find((e) => (e.flags & endStreamFlag) === endStreamFlag);
      return end ? endStreamFromJson(end.data).error : undefined;
    }
  }
}

/** The enveloped messages of a complete body (trailing partial bytes are ignored). */
function envelopes(body: Buffer): { flags: number; data: Uint8Array }[] {
  const found: { flags: number; data: Uint8Array }[] = [];
  for (let pos = 0; pos + 5 <= body.length; ) {
    const end = pos + 5 + body.readUInt32BE(pos + 1);
    if (end > body.length) break;
    found.push({ flags: body[pos] as number, data: body.subarray(pos + 5, end) });
    pos = end;
  }
  return found;
}
