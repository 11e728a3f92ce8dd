import type { IncomingHttpHeaders } from "node:http";
import type http2 from "node:http2";
import type { Duplex } from "node:stream";

/**
 * MAX_HEADER_LIST_SIZE, the largest request header list, as HTTP/2
 * measures it (each header's name and value plus 32 bytes), and for
 * HTTP/1.1 the largest request head.
 *
 * Node enforces it on HTTP/2 itself once the client has acknowledged the
 * server's SETTINGS (the stream is reset with ENHANCE_YOUR_CALM, which
 * gRPC clients report as RESOURCE_EXHAUSTED), and on HTTP/1.1 (HTTP 431).
 * Before that acknowledgement Node still takes up to 64 KB, and gRPC
 * clients send their first call right behind the connection preface: the
 * listener checks those streams here, answering in words that name the
 * setting.
 */
export function headerListSize(headers: IncomingHttpHeaders): number {
  let size = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) size += name.length + one.length + 32;
  }
  return size;
}

/** The message of a request refused for the size of its headers. */
export function headersTooLarge(maxHeaderListSize: number): string {
  return `request headers are larger than MAX_HEADER_LIST_SIZE (${maxHeaderListSize} bytes)`;
}

/**
 * Answers an HTTP/2 stream whose headers are over the limit while its
 * connection's SETTINGS are not yet acknowledged (see headerListSize), and
 * returns true; returns false, touching nothing, for every other stream.
 * gRPC gets RESOURCE_EXHAUSTED (Trailers-Only), anything else HTTP 431.
 */
export function refuseLargeHeaders(
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  maxHeaderListSize: number,
): boolean {
  if (!stream.session?.pendingSettingsAck || headerListSize(headers) <= maxHeaderListSize) {
    return false;
  }
  const message = headersTooLarge(maxHeaderListSize);
  stream.on("error", () => {});
  if (/^application\/grpc(?:[+;]|$)/.test(String(headers["content-type"] ?? ""))) {
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc+proto",
        "grpc-status": "8",
        "grpc-message": message,
      },
      { endStream: true },
    );
  } else {
    stream.respond({ ":status": 431, "content-type": "text/plain; charset=utf-8" });
    stream.end(`${message}\n`);
  }
  // The request body, if any, is not wanted.
  stream.resume();
  return true;
}

/** An HTTP/1.1 server's socket, with the response Node is writing on it. */
type Http1Socket = Duplex & { _httpMessage?: { headersSent: boolean } | null };

/**
 * The HTTP/1.1 server's "clientError" handler: Node's own (an answer
 * unless a response has begun on the socket: 431, 408 or 400, then the
 * socket is destroyed), except that a head over MAX_HEADER_LIST_SIZE gets a
 * body naming the setting.
 */
export function http1ClientError(maxHeaderListSize: number) {
  return (error: Error & { code?: string }, socket: Http1Socket): void => {
    if (socket.writable && !socket._httpMessage?.headersSent) {
      let status = "400 Bad Request";
      let body = "";
      if (error.code === "HPE_HEADER_OVERFLOW") {
        status = "431 Request Header Fields Too Large";
        body = `${headersTooLarge(maxHeaderListSize)}\n`;
      } else if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
        status = "408 Request Timeout";
      }
      socket.write(
        `HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  };
}
