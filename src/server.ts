import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import type { ConnectRouter, ConnectRouterOptions } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { SessionStoreService } from "../gen/sessionstore/v1/session_store_pb.js";
import { createGrpcUnaryFastPath, type UnaryRoute } from "./grpc-unary-fast-path.js";
import type { Logger } from "./logger.js";
import { errorMapping, toConnectError } from "./service/errors.js";
import {
  createSessionStoreHandlers,
  type SessionStoreHandlers,
  toServiceImpl,
} from "./service/session-store-service.js";
import type { SessionStore } from "./store/session-store.js";

/** Everything the server is built from. */
export interface ServerOptions {
  readonly store: SessionStore;
  readonly logger: Logger;
  readonly maxTtlSeconds: number;
  readonly maxPayloadBytes: number;
  /** Requests over this size fail RESOURCE_EXHAUSTED before they are decoded. */
  readonly maxRequestBytes: number;
}

/** The RPC routes; shared by the HTTP/2 server and in-process test transports. */
export function sessionStoreRoutes(
  options: ServerOptions,
  handlers: SessionStoreHandlers = createSessionStoreHandlers(options),
): (router: ConnectRouter) => void {
  const service = toServiceImpl(handlers);
  return (router) => {
    router.service(SessionStoreService, service);
  };
}

/** Interceptors and limits applied to every RPC, whatever the transport. */
export function routerOptions(options: ServerOptions): ConnectRouterOptions {
  return {
    interceptors: [errorMapping(options.logger)],
    readMaxBytes: options.maxRequestBytes,
  };
}

/** A running (or ready to run) SessionStore server. */
export interface SessionStoreServer {
  /** The underlying node:http2 server. */
  readonly http2: http2.Http2Server;
  /** Starts listening; resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Stops accepting connections, sends every client GOAWAY, lets in-flight
   * RPCs finish for up to `graceMs`, then drops what is left. A plain
   * `http2.Server#close` would wait for every idle client connection, which
   * gRPC clients keep open indefinitely.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Builds the server: gRPC, gRPC-Web and Connect on one cleartext HTTP/2 port
 * (prior knowledge). Plain gRPC unary calls take the fast path (see
 * grpc-unary-fast-path.ts); everything else goes to connect-node. Both run
 * the same handlers. It does not own the store; closing it leaves the store
 * open.
 */
export function createServer(options: ServerOptions): SessionStoreServer {
  const handlers = createSessionStoreHandlers(options);
  const connectHandler = connectNodeAdapter({
    routes: sessionStoreRoutes(options, handlers),
    ...routerOptions(options),
  });
  const fastPath = createGrpcUnaryFastPath({
    service: SessionStoreService,
    handlers: handlers as unknown as Record<string, UnaryRoute["handler"]>,
    readMaxBytes: options.maxRequestBytes,
    toStatus: (error, method) => toConnectError(error, options.logger, method),
  });
  // Without TCP_NODELAY, a small response can sit in the kernel waiting
  // for the client's delayed ACK: milliseconds of tail latency per call.
  const server = http2.createServer(connectHandler);
  server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  routeStreams(server, fastPath);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  return {
    http2: server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      const deadline = setTimeout(() => {
        for (const session of sessions) session.destroy();
      }, graceMs);
      return closed.finally(() => clearTimeout(deadline));
    },
  };
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
