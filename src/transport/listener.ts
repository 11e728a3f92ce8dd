import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import { LogThrottle } from "../observability/log-throttle.js";
import type { Logger } from "../observability/logger.js";
import type { NodeServerRequest, NodeServerResponse } from "./connect-node-transport.js";
import { http1ClientError, refuseLargeHeaders } from "./header-limit.js";
import { boundUnreadBody } from "./http1-unread-body.js";
import { IdleSessions } from "./idle-sessions.js";
import { PeerConnections, refuseConnection } from "./peer-connections.js";
import { RapidResetGuard } from "./rapid-reset.js";
import type { FastPath } from "./unary-fast-path.js";

/** Options of {@link createPortListener}. */
export interface PortListenerOptions {
  /** Serves every request of either HTTP version that the fast path does not take. */
  readonly handler: (req: NodeServerRequest, res: NodeServerResponse) => void;
  /** Offered every HTTP/2 stream first; absent when the fast path is off. */
  readonly fastPath: FastPath | undefined;
  /**
   * How long an HTTP/1.1 client may take to send a request's headers;
   * longer, and the connection is closed, so clients that trickle bytes
   * cannot hold connections open.
   */
  readonly http1HeadersTimeoutMs: number;
  /** Serve TLS with these credentials; absent: cleartext. */
  readonly tls?: TlsCredentials;
  /** Told of each TLS handshake that fails (a refused client certificate, a cleartext client). */
  readonly onTlsError?: (error: Error) => void;
  /** What one client may hold of the port (see ConnectionLimits). */
  readonly limits: ConnectionLimits;
  /** Where refused connections are reported (at warn, without the address). */
  readonly logger: Logger;
  /** Told of each connection refused, with the name of the limit. */
  readonly onRefused?: (limit: string) => void;
}

/** The limits of the port that keep one client from taking what others need. */
export interface ConnectionLimits {
  /** MAX_CONCURRENT_STREAMS: streams one HTTP/2 connection may have open (SETTINGS); more are refused. */
  readonly maxConcurrentStreams: number;
  /** MAX_HEADER_LIST_SIZE: the largest request header list (HTTP/2) or head (HTTP/1.1), in bytes. */
  readonly maxHeaderListSize: number;
  /** IDLE_TIMEOUT: a connection with no request in flight this long is closed (0: HTTP/2 never; HTTP/1.1 at most 5 s). */
  readonly idleTimeoutMs: number;
  /** MAX_CONNECTIONS_PER_PEER: open connections per client address (0: unlimited). */
  readonly maxConnectionsPerPeer: number;
}

/** What the port's TLS is made of (PEM contents, not paths). */
export interface TlsCredentials {
  readonly cert: Buffer;
  readonly key: Buffer;
  /**
   * CA(s) that client certificates must chain to; present, a client without
   * a certificate it signed is refused in the handshake (mutual TLS).
   */
  readonly clientCa?: Buffer;
}

/** The one port: every protocol, HTTP/2 and HTTP/1.1, cleartext or TLS. */
export interface PortListener {
  /** The HTTP/2 half (gRPC clients); HTTP/1.1 connections go to a sibling server. */
  readonly http2: http2.Http2Server;
  /** Client connections open right now, whatever their protocol. */
  readonly connections: number;
  /** Resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Replaces the TLS credentials (after a certificate renewal): new
   * connections get them, open ones keep theirs. Throws on a cleartext port,
   * or when the credentials are unusable (then the old ones stay).
   */
  setTls(credentials: TlsCredentials): void;
  /**
   * Stops accepting connections, sends GOAWAY to every HTTP/2 client and
   * `Connection: close` to HTTP/1.1 ones, and lets in-flight requests
   * finish; after `graceMs` the connections left are destroyed, which
   * cancels their calls. A plain `http2.Server#close` would wait for every
   * idle client connection, which gRPC clients keep open indefinitely.
   */
  close(graceMs: number): Promise<void>;
}

/** The longest an idle HTTP/1.1 connection is kept (Node's default). */
const HTTP1_KEEP_ALIVE_MS = 5000;

/** How long a new connection may stay silent before its protocol is known. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** The HTTP/2 connection preface every prior-knowledge client sends first. */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Builds the port. On cleartext, a connection that starts with the HTTP/2
 * preface (gRPC and other prior-knowledge clients) goes to the HTTP/2
 * server, anything else (curl, browsers, Connect or gRPC-Web over HTTP/1.1)
 * to an HTTP/1.1 server. On TLS, ALPN decides instead: "h2" goes to the
 * HTTP/2 server, "http/1.1" or no ALPN to the HTTP/1.1 server (HTTP/2 over
 * TLS requires ALPN). HTTP/2 streams are offered to the fast path first.
 */
export function createPortListener(options: PortListenerOptions): PortListener {
  let closing = false;
  const { limits } = options;
  const h2Server = http2.createServer(
    {
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderListSize,
      },
    },
    options.handler,
  );
  const rapidReset = routeStreams(
    h2Server,
    options.fastPath,
    limits.maxHeaderListSize,
    options.logger,
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  const idle = new IdleSessions(limits.idleTimeoutMs);
  h2Server.on("session", (session) => {
    rapidReset.watch(session);
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    idle.add(session);
    if (closing) session.close();
  });
  const headersTimeout = options.http1HeadersTimeoutMs;
  /** HTTP/1.1 responses begun before shutdown and not yet ended. */
  const inFlightHttp1 = new Set<http.ServerResponse>();
  const h1Server = http.createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(30_000, headersTimeout),
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
      maxHeaderSize: limits.maxHeaderListSize,
      // IDLE_TIMEOUT for HTTP/1.1, between requests only (never during one),
      // and never longer than Node's default of 5 s: HTTP/1.1 clients hold
      // a connection per concurrent request, and fetch (undici) keeps idle
      // ones as long as the server's Keep-Alive hint allows.
      keepAliveTimeout:
        limits.idleTimeoutMs === 0
          ? HTTP1_KEEP_ALIVE_MS
          : Math.min(limits.idleTimeoutMs, HTTP1_KEEP_ALIVE_MS),
    },
    (req, res) => {
      // While shutting down, finish this request and close the connection.
      if (closing) {
        res.setHeader("connection", "close");
      } else {
        // Remembered until it ends, so that a shutdown beginning meanwhile
        // can close its connection too (see close()).
        inFlightHttp1.add(res);
        res.once("close", () => inFlightHttp1.delete(res));
      }
      boundUnreadBody(req, res);
      options.handler(req, res);
    },
  );
  h1Server.on("clientError", http1ClientError(limits.maxHeaderListSize));
  // Node tracks an HTTP server's connections (for closeIdleConnections and
  // the header and request timeouts) from its "listening" event; this one
  // never listens itself (connections are handed to it), so start that now.
  h1Server.emit("listening");

  const open = new Set<net.Socket>();
  const undecided = new Set<net.Socket>();
  const refusing = new Set<net.Socket>();
  /** HTTP/2 connections waiting before they are served (see RapidResetGuard.holdOf). */
  const held = new Set<net.Socket>();
  const perPeer = new PeerConnections(limits.maxConnectionsPerPeer);
  const refusals = refusalReporter(options);
  /**
   * Hands a connection whose protocol is known to its server (an HTTP/2 one
   * after a wait, if RapidResetGuard.holdOf says so), or refuses it over
   * MAX_CONNECTIONS_PER_PEER.
   */
  const admit = (socket: net.Socket, isHttp2: boolean) => {
    const address = socket.remoteAddress ?? "";
    if (perPeer.tryOpen(address)) {
      socket.once("close", () => perPeer.closed(address));
      const hold = isHttp2 ? rapidReset.holdOf(address) : 0;
      if (hold === 0) {
        (isHttp2 ? h2Server : h1Server).emit("connection", socket);
        return;
      }
      // From an address cut off for rapid reset lately: it waits, unread.
      held.add(socket);
      socket.once("close", () => held.delete(socket));
      setTimeout(() => {
        held.delete(socket);
        if (!socket.destroyed && !closing) h2Server.emit("connection", socket);
      }, hold);
    } else {
      // Answered in its own protocol (so the client can say why).
      refusing.add(socket);
      socket.once("close", () => refusing.delete(socket));
      refuseConnection(socket, isHttp2, refusals.refused());
    }
  };
  const listener = options.tls
    ? tls.createServer(tlsOptions(options.tls), (socket) =>
        admit(socket, socket.alpnProtocol === "h2"),
      )
    : net.createServer();
  listener.on("connection", (socket: net.Socket) => {
    // Without TCP_NODELAY, a small response can sit in the kernel waiting
    // for the client's delayed ACK: milliseconds of tail latency per call.
    socket.setNoDelay(true);
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    // A TLS connection's protocol is known from its handshake (ALPN).
    if (options.tls) return;
    undecided.add(socket);
    socket.once("close", () => undecided.delete(socket));
    routeConnection(socket, (isHttp2) => {
      undecided.delete(socket);
      admit(socket, isHttp2);
    });
  });
  if (listener instanceof tls.Server) {
    // Without a listener Node destroys the socket silently; the error names
    // the handshake failure (no or unknown client certificate, a cleartext
    // client), never key material.
    listener.on("tlsClientError", (error) => options.onTlsError?.(error));
  }

  return {
    http2: h2Server,
    get connections() {
      return open.size;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(port, host, () => {
          listener.off("error", reject);
          resolve(listener.address() as AddressInfo);
        });
      });
    },
    setTls(credentials) {
      if (!(listener instanceof tls.Server) || !options.tls) {
        throw new Error("the port does not serve TLS");
      }
      // Whether client certificates are required is fixed when the server
      // is made; only the certificates themselves can change.
      if ((credentials.clientCa === undefined) !== (options.tls.clientCa === undefined)) {
        throw new Error("turning client certificates on or off needs a restart");
      }
      listener.setSecureContext(tlsOptions(credentials));
    },
    async close(graceMs) {
      closing = true;
      idle.stop();
      const closed = new Promise<void>((resolve) => {
        if (!listener.listening) return resolve();
        listener.close(() => resolve());
      });
      for (const socket of [...undecided, ...refusing, ...held]) socket.destroy();
      for (const session of sessions) session.close();
      h1Server.closeIdleConnections();
      // A request in flight now would otherwise leave its connection idle
      // in keep-alive once answered, and the port would wait for the
      // client, or the 5 s keep-alive timeout, before it closes. So its
      // response says Connection: close (when its head is not sent yet),
      // or its connection is closed once it ends.
      for (const res of inFlightHttp1) {
        if (!res.headersSent) res.setHeader("connection", "close");
        else res.once("finish", () => res.socket?.end());
      }
      const deadline = setTimeout(() => {
        for (const session of sessions) session.destroy();
        h1Server.closeAllConnections();
        // TLS connections still in their handshake.
        for (const socket of open) socket.destroy();
      }, graceMs);
      await closed.finally(() => clearTimeout(deadline));
      // Stops the HTTP/1.1 server's connection checks.
      h1Server.close();
    },
  };
}

/**
 * The port's TLS settings: TLS 1.2 or newer, ALPN offering HTTP/2 and
 * HTTP/1.1, and with a client CA, a verified client certificate required in
 * the handshake.
 */
function tlsOptions(credentials: TlsCredentials): tls.TlsOptions {
  const mutual = credentials.clientCa !== undefined;
  return {
    cert: credentials.cert,
    key: credentials.key,
    minVersion: "TLSv1.2",
    ALPNProtocols: ["h2", "http/1.1"],
    handshakeTimeout: FIRST_BYTES_TIMEOUT_MS,
    requestCert: mutual,
    rejectUnauthorized: mutual,
    ...(mutual ? { ca: credentials.clientCa } : {}),
  };
}

/**
 * Waits for the first bytes of a connection and says whether it is HTTP/2
 * with prior knowledge (it starts with the connection preface). The bytes
 * read go back into the socket for the server that takes it; Node's HTTP/2
 * session reads data already buffered in a socket it is given.
 */
function routeConnection(socket: net.Socket, route: (isHttp2: boolean) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), FIRST_BYTES_TIMEOUT_MS);
  const onError = () => clearTimeout(timer);
  const onData = (chunk: Buffer) => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const compared = Math.min(seen.length, HTTP2_PREFACE.length);
    const matchesPreface = seen.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    // Four bytes tell "PRI " from every HTTP/1.1 method; wait for them.
    if (matchesPreface && seen.length < 4) return;
    clearTimeout(timer);
    socket.off("data", onData);
    socket.off("error", onError);
    socket.pause();
    socket.unshift(seen);
    route(matchesPreface);
    if (!matchesPreface) socket.resume();
  };
  socket.on("data", onData);
  socket.on("error", onError);
}

/**
 * Puts the header size check (see refuseLargeHeaders), the rapid reset
 * guard and the fast path in front of Node's HTTP/2 compatibility layer.
 * Passing a request listener to http2.createServer makes Node add one
 * "stream" listener that wraps each stream in request/response objects;
 * that work is wasted on streams the fast path serves, so the listener is
 * taken off and called only for the streams the fast path declines.
 * Streams of TLS and cleartext connections alike come through here.
 * Returns the rapid reset guard, which must watch each new session.
 */
function routeStreams(
  server: http2.Http2Server,
  fastPath: FastPath | undefined,
  maxHeaderListSize: number,
  logger: Logger,
): RapidResetGuard {
  const compat = server.listeners("stream");
  if (compat.length !== 1) {
    throw new Error(`expected Node's one HTTP/2 compatibility listener, found ${compat.length}`);
  }
  const [toCompat] = compat as ((...args: unknown[]) => void)[];
  server.removeAllListeners("stream");
  const rapidReset = new RapidResetGuard(logger, (stream, headers, rest) => {
    if (!fastPath?.(stream, headers)) toCompat?.call(server, stream, headers, ...rest);
  });
  server.on("stream", (stream, headers, ...rest: unknown[]) => {
    if (refuseLargeHeaders(stream, headers, maxHeaderListSize)) return;
    rapidReset.handOff(stream, headers, rest);
  });
  return rapidReset;
}

/** How often, at most, refused connections are logged: a flood of them must not flood the log. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Counts and logs refused connections and words the refusal. The log line
 * (warn) says how many were refused since the last one, never from where.
 */
function refusalReporter(options: PortListenerOptions): { refused(): string } {
  const limit = "MAX_CONNECTIONS_PER_PEER";
  const reason = `too many connections from this address: MAX_CONNECTIONS_PER_PEER is ${options.limits.maxConnectionsPerPeer}`;
  const throttle = new LogThrottle(REFUSAL_LOG_INTERVAL_MS);
  return {
    refused() {
      options.onRefused?.(limit);
      const refused = throttle.count();
      if (refused !== undefined) {
        options.logger.warn(
          { limit, max: options.limits.maxConnectionsPerPeer, refused },
          "refused connections from a client at its connection limit",
        );
      }
      return reason;
    },
  };
}
