import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, ConnectRouterOptions } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { SessionStoreService } from "../gen/sessionstore/v1/session_store_pb.js";
import type { Logger } from "./logger.js";
import { errorMapping } from "./service/errors.js";
import { createSessionStoreService } from "./service/session-store-service.js";
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
export function sessionStoreRoutes(options: ServerOptions): (router: ConnectRouter) => void {
  const service = createSessionStoreService(options);
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
 * (prior knowledge). It does not own the store; closing it leaves the store
 * open.
 */
export function createServer(options: ServerOptions): SessionStoreServer {
  const handler = connectNodeAdapter({
    routes: sessionStoreRoutes(options),
    ...routerOptions(options),
  });
  const server = http2.createServer(handler);
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
