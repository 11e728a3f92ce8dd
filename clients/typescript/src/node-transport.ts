/**
 * The Node.js transport behind createSessionStoreClient: one HTTP/2
 * connection speaking gRPC, gRPC-Web or Connect, in cleartext or TLS, with
 * the bearer token on every call. A file of its own so that other services
 * on the same server (grpc.health.v1, for sessionstore-ctl's `health`) get
 * exactly the client's connection settings.
 */
import type { SecureClientSessionOptions } from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { type BearerTokenSource, bearerTokenInterceptor } from "./bearer-token.js";
import { createGrpcUnaryTransport } from "./grpc-unary-transport.js";

/** The wire protocols the server speaks, all on one port. */
export type SessionStoreProtocol = "grpc" | "grpc-web" | "connect";

/**
 * TLS settings of a client, as PEM text (a string or the bytes of a file).
 * They apply to an `https://` baseUrl; without them, `https://` verifies the
 * server against Node's default CAs.
 */
export interface SessionStoreClientTls {
  /**
   * The CA certificate(s) the server's certificate must chain to, instead of
   * Node's default CAs: what a private CA needs. The server's name is still
   * checked against the baseUrl's host.
   */
  readonly ca?: string | Buffer | undefined;
  /** The client certificate (chain) for mutual TLS; needs `key`. */
  readonly cert?: string | Buffer | undefined;
  /** The private key of `cert`. */
  readonly key?: string | Buffer | undefined;
}

/**
 * Options of {@link createSessionStoreClient}: one object, so that options
 * can be added later without breaking callers.
 */
export interface SessionStoreClientOptions {
  /**
   * The server's base URL: "http://localhost:50051" for cleartext, or
   * "https://sessions.internal:50051" for TLS.
   */
  readonly baseUrl: string;
  /** Wire protocol; "grpc" by default. */
  readonly protocol?: SessionStoreProtocol;
  /** Use the JSON encoding instead of binary protobuf (Connect and gRPC-Web only). */
  readonly useJson?: boolean;
  /**
   * The bearer token sent as `authorization: Bearer <token>` on every call,
   * or a function asked before each call for a token that rotates. Over an
   * `http://` baseUrl it travels in cleartext: anyone on the path can read
   * and reuse it, so use `https://` beyond a trusted network.
   */
  readonly token?: BearerTokenSource | undefined;
  /** CA and client certificate for an `https://` baseUrl. */
  readonly tls?: SessionStoreClientTls | undefined;
}

/**
 * node:http2's TLS options from `tls`, or undefined for Node's defaults.
 *
 * @throws TypeError when the options cannot work (TLS over http://, a
 *   certificate without its key): mistakes that would otherwise surface as
 *   a cleartext connection or a confusing handshake failure.
 */
function tlsOptions(
  baseUrl: string,
  tls: SessionStoreClientTls | undefined,
): SecureClientSessionOptions | undefined {
  const secure = new URL(baseUrl).protocol === "https:";
  if (!tls) return undefined;
  const { ca, cert, key } = tls;
  if (!secure && (ca !== undefined || cert !== undefined || key !== undefined)) {
    throw new TypeError(`tls needs an https:// baseUrl; ${baseUrl} is cleartext`);
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError("tls.cert and tls.key go together: set both for mutual TLS, or neither");
  }
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
  };
}

/**
 * The transport for `options`, as createSessionStoreClient makes it; any
 * service's client can be created over it. For "grpc", unary calls go
 * through the SDK's own gRPC transport (grpc-unary-transport.ts) and
 * streaming calls through connect-node's, each on a connection of its
 * own; "grpc-web" and "connect" are connect-node's transports.
 *
 * @throws TypeError when `token` or `tls` cannot work.
 */
export function createNodeTransport(options: SessionStoreClientOptions): Transport {
  const { baseUrl, protocol = "grpc", useJson = false, token } = options;
  const nodeOptions = tlsOptions(baseUrl, options.tls);
  const interceptors: Interceptor[] = token === undefined ? [] : [bearerTokenInterceptor(token)];
  const common = {
    baseUrl,
    httpVersion: "2",
    interceptors,
    ...(nodeOptions ? { nodeOptions } : {}),
  } as const;
  return protocol === "grpc"
    ? createGrpcUnaryTransport({
        baseUrl,
        token,
        nodeOptions,
        streams: createGrpcTransport(common),
      })
    : protocol === "grpc-web"
      ? createGrpcWebTransport({ ...common, useBinaryFormat: !useJson })
      : createConnectTransport({ ...common, useBinaryFormat: !useJson });
}
