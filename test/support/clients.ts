import { Agent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";

/** A connect-node client's protocol, encoding and HTTP version. */
export interface ClientKind {
  readonly protocol: "grpc" | "grpc-web" | "connect";
  readonly binary?: boolean;
  /** "2" (prior knowledge, the default) or "1.1"; gRPC needs HTTP/2. */
  readonly httpVersion?: "2" | "1.1";
  /** Send every request gzip-compressed (which the gRPC fast path leaves to connect-node). */
  readonly gzip?: boolean;
}

/**
 * connect-node clients of one server whose connections the test closes at
 * the end: connect-node keeps idle HTTP/2 connections for 15 minutes and
 * Node's HTTP/1.1 agent keeps sockets alive, and a server test must see
 * every connection gone (see RunningServer.stop).
 */
export interface ClientPool {
  transport(kind: ClientKind): Transport;
  /** A typed SessionStoreService client. */
  sessions(kind?: ClientKind): Client<typeof SessionStoreService>;
  /** Closes every connection the pool's clients opened. */
  close(): void;
}

/**
 * @param tls over an https:// baseUrl: the CA to trust and, for mTLS, the
 *   client certificate and key.
 */
export function clientPool(
  baseUrl: string,
  tls?: { readonly ca: Buffer; readonly cert?: Buffer; readonly key?: Buffer },
): ClientPool {
  const managers: Http2SessionManager[] = [];
  const agents: Agent[] = [];
  const pool: ClientPool = {
    transport({ protocol, binary = true, httpVersion = "2", gzip = false }) {
      const compression = gzip ? { sendCompression: compressionGzip, compressMinBytes: 0 } : {};
      if (httpVersion === "1.1") {
        // A timeout of its own, as Node's global agent has: without one,
        // Node's agent ignores the server's "Keep-Alive: timeout=5" and can
        // reuse an idle socket just as the server closes it (ECONNRESET or
        // EPIPE; the long network race met it once in 10,000 rounds).
        const agentOptions = { keepAlive: true, timeout: 5000 };
        const agent = tls ? new HttpsAgent({ ...agentOptions, ...tls }) : new Agent(agentOptions);
        agents.push(agent);
        const options = {
          baseUrl,
          httpVersion,
          useBinaryFormat: binary,
          nodeOptions: { agent },
          ...compression,
        } as const;
        if (protocol === "grpc") throw new Error("gRPC needs HTTP/2");
        return protocol === "connect"
          ? createConnectTransport(options)
          : createGrpcWebTransport(options);
      }
      const sessionManager = new Http2SessionManager(baseUrl, undefined, tls);
      managers.push(sessionManager);
      const options = {
        baseUrl,
        httpVersion,
        useBinaryFormat: binary,
        sessionManager,
        ...compression,
      } as const;
      if (protocol === "grpc") return createGrpcTransport(options);
      return protocol === "connect"
        ? createConnectTransport(options)
        : createGrpcWebTransport(options);
    },
    sessions(kind = { protocol: "grpc" }) {
      return createClient(SessionStoreService, pool.transport(kind));
    },
    close() {
      for (const manager of managers.splice(0)) manager.abort();
      for (const agent of agents.splice(0)) agent.destroy();
    },
  };
  return pool;
}
