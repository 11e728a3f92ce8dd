import http2 from "node:http2";
import net, { type Socket } from "node:net";

/**
 * Raw HTTP/2 and HTTP/1.1 exchanges for tests that send what no well-behaved
 * client library would (malformed frames, bodies and heads), and read what
 * came back without interpreting it the way a client library would.
 */

/** What came back for one request, whatever the protocol. */
export interface RawResponse {
  /** The HTTP status; undefined when the stream was reset or the connection closed first. */
  readonly httpStatus: number | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly trailers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** The HTTP/2 RST_STREAM code the server reset the stream with, if it did. */
  readonly resetCode?: number;
}

/** Headers as one string per name (repeated ones joined with ", "). */
export function flatten(
  headers: Readonly<Record<string, string | string[] | number | undefined>>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : String(value);
  }
  return out;
}

/** A gRPC length-prefixed message: flags, the 4-byte length (the message's, unless given), the message. */
export function envelope(message: Uint8Array, flags = 0, length = message.length): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flags;
  header.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([header, message]);
}

/**
 * One HTTP/2 request on `session`: resolves once the stream closes, or
 * rejects after `timeoutMs` (a server that never answers is a failure).
 */
export function h2Exchange(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
  timeoutMs = 5000,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch (error) {
      reject(error);
      return;
    }
    let httpStatus: number | undefined;
    let responseHeaders: Record<string, string> = {};
    let trailers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("response", (h) => {
      httpStatus = Number(h[":status"]);
      responseHeaders = flatten(h);
    });
    stream.on("trailers", (h) => {
      trailers = flatten(h);
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      const reset = stream.rstCode;
      resolve({
        httpStatus,
        headers: responseHeaders,
        trailers,
        body: Buffer.concat(chunks),
        ...(reset !== undefined && reset !== http2.constants.NGHTTP2_NO_ERROR
          ? { resetCode: reset }
          : {}),
      });
    });
    stream.end(body);
  });
}

/**
 * One HTTP/1.1 exchange over a new connection: writes `request` (head and
 * body, as given) and reads until the server closes the connection (send
 * `connection: close`). Resolves with the parsed status line and headers
 * and the raw body (chunked bodies are de-chunked).
 */
export function h1Exchange(port: number, request: Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on("data", (chunk) => chunks.push(chunk));
    // The server may close while the request is still being written (an
    // early answer to a bad head): what it answered is still read.
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseHttp1(Buffer.concat(chunks)));
    });
    socket.write(request);
  });
}

function parseHttp1(raw: Buffer): RawResponse {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return { httpStatus: undefined, headers: {}, trailers: {}, body: raw };
  const [statusLine = "", ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const headers = headerLines(lines);
  const rest = raw.subarray(end + 4);
  const status = Number(statusLine.split(" ")[1]);
  if (!headers["transfer-encoding"]?.includes("chunked")) {
    return { httpStatus: status, headers, trailers: {}, body: rest };
  }
  const { body, trailers } = dechunk(rest);
  return { httpStatus: status, headers, trailers, body };
}

function headerLines(lines: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** A chunked body and the trailers after its last chunk (where gRPC over HTTP/1.1 puts its status). */
function dechunk(body: Buffer): { body: Buffer; trailers: Record<string, string> } {
  const parts: Buffer[] = [];
  let pos = 0;
  while (pos < body.length) {
    const lineEnd = body.indexOf("\r\n", pos);
    if (lineEnd < 0) break;
    const size = Number.parseInt(body.subarray(pos, lineEnd).toString("latin1"), 16);
    if (size === 0) {
      const trailers = body
        .subarray(lineEnd + 2)
        .toString("latin1")
        .split("\r\n");
      return { body: Buffer.concat(parts), trailers: headerLines(trailers) };
    }
    if (!(size > 0)) break;
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
  return { body: Buffer.concat(parts), trailers: {} };
}

/** How a response ended, read from every place a protocol puts its status. */
export interface ResponseVerdict {
  /** The call succeeded (gRPC status 0, or a Connect unary 200). */
  readonly ok: boolean;
  /** The gRPC status or Connect code it carried, if any. */
  readonly code: string | undefined;
  /** The gRPC or gRPC-Web status message it carried, decoded, if any. */
  readonly message?: string;
}

/** gRPC codes by Connect's names, for Connect error bodies. */
const CONNECT_CODES: Readonly<Record<string, string>> = {
  canceled: "1",
  unknown: "2",
  invalid_argument: "3",
  deadline_exceeded: "4",
  not_found: "5",
  already_exists: "6",
  permission_denied: "7",
  resource_exhausted: "8",
  failed_precondition: "9",
  aborted: "10",
  out_of_range: "11",
  unimplemented: "12",
  internal: "13",
  unavailable: "14",
  data_loss: "15",
  unauthenticated: "16",
};

/**
 * The status a response carries: grpc-status from headers or trailers
 * (gRPC), from the trailer frame of the body (gRPC-Web, base64 for the
 * text variant), or the code of a Connect error body; "http-N" for an
 * HTTP error without one, "reset" for a reset stream, "no-response" when
 * the connection closed first.
 */
export function verdictOf(response: RawResponse): ResponseVerdict {
  const grpc = response.trailers["grpc-status"] ?? response.headers["grpc-status"];
  if (grpc !== undefined) {
    const message = response.trailers["grpc-message"] ?? response.headers["grpc-message"];
    return {
      ok: grpc === "0",
      code: grpc,
      ...(message === undefined ? {} : { message: decodeURIComponent(message) }),
    };
  }
  const type = response.headers["content-type"] ?? "";
  if (type.startsWith("application/grpc-web")) {
    const body = type.startsWith("application/grpc-web-text")
      ? Buffer.from(response.body.toString("latin1"), "base64")
      : response.body;
    const trailer = trailerText(body);
    const status = /grpc-status:\s*(\d+)/i.exec(trailer)?.[1];
    const message = /grpc-message:\s*([^\r\n]*)/i.exec(trailer)?.[1];
    return {
      ok: status === "0",
      code: status ?? "no-trailer",
      ...(message === undefined ? {} : { message: decodeURIComponent(message) }),
    };
  }
  if (type.startsWith("application/connect+")) {
    const end = /"code":\s*"(\w+)"/.exec(response.body.toString("utf8"))?.[1];
    return {
      ok: end === undefined && response.httpStatus === 200,
      code: end ? CONNECT_CODES[end] : "0",
    };
  }
  if (response.httpStatus === undefined) {
    return { ok: false, code: response.resetCode === undefined ? "no-response" : "reset" };
  }
  if (response.httpStatus === 200) return { ok: true, code: "0" };
  const connect = /"code":\s*"(\w+)"/.exec(response.body.toString("utf8"))?.[1];
  return {
    ok: false,
    code: connect ? (CONNECT_CODES[connect] ?? connect) : `http-${response.httpStatus}`,
  };
}

/** The text of the trailer frames (flag 0x80) of a gRPC-Web body. */
function trailerText(body: Buffer): string {
  let text = "";
  for (let pos = 0; pos + 5 <= body.length; ) {
    const end = pos + 5 + body.readUInt32BE(pos + 1);
    if (((body[pos] as number) & 0x80) !== 0)
      text += body.subarray(pos + 5, end).toString("latin1");
    pos = end;
  }
  return text;
}

/**
 * An HTTP/1.1 request declaring a 100 GB body, written on the socket
 * `connect` opens as fast as it takes it until the server closes: what it answered, how long after the
 * answer it closed, and how much the client managed to write.
 */
export function endlessBody(
  connect: () => Socket,
  path: string,
  headers: Readonly<Record<string, string>>,
): Promise<{ response: string; closedAfterAnswerMs: number; sentBytes: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect();
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let response = "";
    let answeredAt = 0;
    let sentBytes = 0;
    let closed = false;
    const giveUp = setTimeout(() => {
      socket.destroy();
      reject(new Error("the server kept the connection open"));
    }, 10_000);
    socket.on("data", (data: Buffer) => {
      if (!answeredAt) answeredAt = performance.now();
      response += data.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      closed = true;
      clearTimeout(giveUp);
      resolve({ response, closedAfterAnswerMs: performance.now() - answeredAt, sentBytes });
    });
    const head = [
      `POST ${path} HTTP/1.1`,
      "host: 127.0.0.1",
      "content-length: 100000000000",
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
      "",
      "",
    ].join("\r\n");
    socket.write(head);
    const pump = () => {
      while (!closed && socket.writable) {
        sentBytes += chunk.length;
        if (!socket.write(chunk)) {
          socket.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
}
