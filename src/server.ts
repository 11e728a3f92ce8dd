import http from "node:http";
import http2 from "node:http2";
import net, { type AddressInfo } from "node:net";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "../gen/health/v1/health_pb.js";
import { SessionStoreService } from "../gen/sessionstore/v1/session_store_pb.js";
import { createHealthService, HealthMonitor } from "./grpc/health.js";
import {
  createReflectionServices,
  ServerReflectionV1,
  ServerReflectionV1Alpha,
} from "./grpc/reflection.js";
import type { Logger } from "./observability/logger.js";
import {
  createTelemetry,
  OK,
  type PeerAddress,
  type Telemetry,
} from "./observability/telemetry.js";
import { errorMapping, toConnectError } from "./service/errors.js";
import {
  createSessionStoreHandlers,
  type SessionStoreHandlers,
  toServiceImpl,
} from "./service/session-store-service.js";
import type { SessionStore } from "./store/session-store.js";
import { createGrpcUnaryFastPath, type UnaryRoute } from "./transport/grpc-unary-fast-path.js";

/** Everything the server is built from. */
export interface ServerOptions {
  readonly store: SessionStore;
  readonly logger: Logger;
  readonly maxTtlSeconds: number;
  readonly maxPayloadBytes: number;
  /** Requests over this size fail RESOURCE_EXHAUSTED before they are decoded. */
  readonly maxRequestBytes: number;
  /** Metrics and RPC logs; by default a private registry, RPC lines at debug. */
  readonly telemetry?: Telemetry;
  /** Health; by default probing the store every 250 ms. */
  readonly health?: HealthMonitor;
  /**
   * How long an HTTP/1.1 client may take to send a request's headers
   * (default 10 s); longer, and the connection is closed, so clients that
   * trickle bytes cannot hold connections open.
   */
  readonly http1HeadersTimeoutMs?: number;
}

/** How often health probes the store, and how long one probe may take. */
const HEALTH_PROBE = { intervalMs: 250, timeoutMs: 500 };

/** How long a new connection may stay silent before its protocol is known. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/** The HTTP/2 connection preface every prior-knowledge client sends first. */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** The client address of a Connect-served call, for the RPC log. */
const PEER = createContextKey<PeerAddress>(() => undefined, { description: "peer address" });

/** The SessionStoreService routes; shared by the server and in-process test transports. */
export function sessionStoreRoutes(
  options: ServerOptions,
  handlers: SessionStoreHandlers = createSessionStoreHandlers(options),
): (router: ConnectRouter) => void {
  const service = toServiceImpl(handlers);
  return (router) => {
    router.service(SessionStoreService, service);
  };
}

/** Interceptors and limits applied to every RPC that connect-node serves. */
export function routerOptions(options: ServerOptions, telemetry?: Telemetry): ConnectRouterOptions {
  const onStoreError = telemetry
    ? (kind: "unavailable" | "internal") => telemetry.storeError(kind)
    : undefined;
  return {
    // The first interceptor is the outermost: telemetry sees mapped errors.
    interceptors: [
      ...(telemetry ? [observeRpcs(telemetry)] : []),
      errorMapping(options.logger, onStoreError),
    ],
    readMaxBytes: options.maxRequestBytes,
  };
}

/** Reports every Connect-served RPC to telemetry, streams when they end. */
function observeRpcs(telemetry: Telemetry): Interceptor {
  return (next) => async (req) => {
    const ended = telemetry.rpcStarted(
      `${req.service.typeName}/${req.method.name}`,
      req.contextValues.get(PEER),
    );
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (error) {
      ended(ConnectError.from(error).code);
      throw error;
    }
    if (!res.stream) {
      ended(OK);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let code: number = Code.Canceled;
        try {
          yield* messages;
          code = OK;
        } catch (error) {
          code = ConnectError.from(error).code;
          throw error;
        } finally {
          ended(code);
        }
      })(),
    };
  };
}

/** A running (or ready to run) SessionStore server. */
export interface SessionStoreServer {
  /** The HTTP/2 half (gRPC clients); HTTP/1.1 connections go to a sibling server. */
  readonly http2: http2.Http2Server;
  readonly health: HealthMonitor;
  readonly telemetry: Telemetry;
  /** Starts health probing and listening; resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Shuts down gracefully: health NOT_SERVING, no new connections, GOAWAY to
   * every HTTP/2 client and `Connection: close` to HTTP/1.1 ones, in-flight
   * RPCs finish; after `graceMs` whatever is left is cancelled. A plain
   * `http2.Server#close` would wait for every idle client connection, which
   * gRPC clients keep open indefinitely.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Builds the server: one cleartext port for every client. A connection
 * that starts with the HTTP/2 preface (gRPC and other prior-knowledge
 * clients) goes to the HTTP/2 server; anything else (curl, browsers,
 * Connect or gRPC-Web over HTTP/1.1) to an HTTP/1.1 server. Both serve
 * SessionStoreService, grpc.health.v1.Health and server reflection (v1 and
 * v1alpha) through connect-node, except plain gRPC unary calls, which take
 * the fast path (see grpc-unary-fast-path.ts) with the same handlers. It does
 * not own the store: closing the server leaves the store open.
 */
export function createServer(options: ServerOptions): SessionStoreServer {
  const { logger, store } = options;
  const telemetry =
    options.telemetry ?? createTelemetry({ logger, rpcLogLevel: "debug", processMetrics: false });
  const health =
    options.health ?? new HealthMonitor({ probe: (signal) => store.ping(signal), ...HEALTH_PROBE });
  health.subscribe((serving) => {
    if (!health.isShutDown) telemetry.storeConnected(serving);
  });
  const handlers = createSessionStoreHandlers(options);
  const reflection = createReflectionServices([SessionStoreService, Health]);
  const cancelRemaining = new AbortController();
  const connectHandler = connectNodeAdapter({
    routes: (router) => {
      sessionStoreRoutes(options, handlers)(router);
      router.service(Health, createHealthService(health, [SessionStoreService.typeName]));
      router.service(ServerReflectionV1, reflection.v1);
      router.service(ServerReflectionV1Alpha, reflection.v1alpha);
    },
    ...routerOptions(options, telemetry),
    shutdownSignal: cancelRemaining.signal,
    contextValues: (req) => createContextValues().set(PEER, () => req.socket?.remoteAddress),
  });
  const fastPath = createGrpcUnaryFastPath({
    service: SessionStoreService,
    handlers: handlers as unknown as Record<string, UnaryRoute["handler"]>,
    readMaxBytes: options.maxRequestBytes,
    toStatus: (error, method) =>
      toConnectError(error, logger, method, (kind) => telemetry.storeError(kind)),
    observe: (procedure, peer) => telemetry.rpcStarted(procedure, peer),
  });

  let closing = false;
  const h2Server = http2.createServer(connectHandler);
  routeStreams(h2Server, fastPath);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2Server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  const headersTimeout = options.http1HeadersTimeoutMs ?? 10_000;
  const h1Server = http.createServer(
    {
      headersTimeout,
      requestTimeout: Math.max(30_000, headersTimeout),
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    (req, res) => {
      // While shutting down, finish this request and close the connection.
      if (closing) res.setHeader("connection", "close");
      void connectHandler(req, res);
    },
  );
  // Node tracks an HTTP server's connections (for closeIdleConnections and
  // the header and request timeouts) from its "listening" event; this one
  // never listens itself (connections are handed to it), so start that now.
  h1Server.emit("listening");

  const undecided = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    // Without TCP_NODELAY, a small response can sit in the kernel waiting
    // for the client's delayed ACK: milliseconds of tail latency per call.
    socket.setNoDelay(true);
    undecided.add(socket);
    socket.once("close", () => undecided.delete(socket));
    routeConnection(socket, (isHttp2) => {
      undecided.delete(socket);
      (isHttp2 ? h2Server : h1Server).emit("connection", socket);
    });
  });

  return {
    http2: h2Server,
    health,
    telemetry,
    async listen(port, host) {
      await health.start();
      telemetry.storeConnected(health.isServing);
      return new Promise((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(port, host, () => {
          listener.off("error", reject);
          resolve(listener.address() as AddressInfo);
        });
      });
    },
    async close(graceMs = 10_000) {
      closing = true;
      health.shutdown();
      const closed = new Promise<void>((resolve) => {
        if (!listener.listening) return resolve();
        listener.close(() => resolve());
      });
      for (const socket of undecided) socket.destroy();
      for (const session of sessions) session.close();
      h1Server.closeIdleConnections();
      const deadline = setTimeout(() => {
        cancelRemaining.abort(new ConnectError("the server is shutting down", Code.Unavailable));
        for (const session of sessions) session.destroy();
        h1Server.closeAllConnections();
      }, graceMs);
      await closed.finally(() => clearTimeout(deadline));
      // Stops the HTTP/1.1 server's connection checks.
      h1Server.close();
    },
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
 * Puts the fast path in front of Node's HTTP/2 compatibility layer. Passing
 * a request listener to http2.createServer makes Node add one "stream"
 * listener that wraps each stream in request/response objects; that work is
 * wasted on streams the fast path serves, so the listener is taken off and
 * called only for the streams the fast path declines.
 */
function routeStreams(
  server: http2.Http2Server,
  fastPath: (...args: FastPathArgs) => boolean,
): void {
  const compat = server.listeners("stream");
  if (compat.length !== 1) {
    throw new Error(`expected Node's one HTTP/2 compatibility listener, found ${compat.length}`);
  }
  const [toCompat] = compat as ((...args: unknown[]) => void)[];
  server.removeAllListeners("stream");
  server.on("stream", (stream, headers, ...rest: unknown[]) => {
    if (!fastPath(stream, headers)) toCompat?.call(server, stream, headers, ...rest);
  });
}

type FastPathArgs = [http2.ServerHttp2Stream, http2.IncomingHttpHeaders];
