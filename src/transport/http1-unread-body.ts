import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/**
 * Of a request body still arriving once its response is complete (an early
 * answer: an unknown method, a body over MAX_REQUEST_BYTES, a rejected
 * call), an HTTP/1.1 connection reads and drops about this much more, so
 * that a client finishing a small body keeps its connection.
 */
export const HTTP1_DRAIN_BYTES = 1024 * 1024;
/** How long a connection past the drain stays half-closed before it is destroyed. */
export const HTTP1_LINGER_MS = 1000;
/** How often the bytes read are checked while a body drains. */
const DRAIN_CHECK_MS = 20;

/**
 * Bounds what an HTTP/1.1 connection reads of a request body nobody will
 * use. Left alone, Node reads and drops the rest of a body never read,
 * however long, until `requestTimeout` (30 s): gigabytes of parsing over
 * loopback for one request; and a body read in part stalls the connection
 * for as long. Past HTTP1_DRAIN_BYTES the connection is closed the way a
 * server must close on a client still sending (a lingering close):
 * FIN after the response, reading stopped, and the socket destroyed
 * HTTP1_LINGER_MS later, or as soon as the client closes. Destroying it at
 * once would answer the client's next bytes with a TCP reset, which can
 * discard the response before the client has read it.
 */
export function boundUnreadBody(req: IncomingMessage, res: ServerResponse): void {
  // Node detaches the request from its socket once the exchange is over.
  const { socket } = req;
  res.once("finish", () => {
    if (req.complete || socket.destroyed) return;
    // A body read in part and then left is paused: read on. (It must not
    // have been destroyed: Node then stops reading the connection until
    // requestTimeout. The connect-node transport reads bodies with an
    // iterator that does not destroy them.)
    req.resume();
    const start = socket.bytesRead;
    const check = setInterval(() => {
      if (req.complete || socket.destroyed) {
        clearInterval(check);
      } else if (socket.bytesRead - start > HTTP1_DRAIN_BYTES) {
        clearInterval(check);
        lingeringClose(socket);
      }
    }, DRAIN_CHECK_MS);
  });
}

function lingeringClose(socket: Socket): void {
  socket.end();
  socket.pause();
  const timer = setTimeout(() => socket.destroy(), HTTP1_LINGER_MS);
  socket.once("close", () => clearTimeout(timer));
}
