/**
 * The Node.js entry of @sessionstore/client: every protocol the server
 * speaks (gRPC, gRPC-Web, Connect) over node:http2, in cleartext or TLS.
 * Browsers get ./web.ts instead, through the package's `browser` export
 * condition.
 */
import type { SecureClientSessionOptions } from "node:http2";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { type BearerTokenSource, bearerTokenInterceptor } from "./bearer-token.js";
import { SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";

/**
 * The interceptor behind the `token` option and the type of what it takes,
 * for callers who build their own transport or client.
 */
export { type BearerTokenSource, bearerTokenInterceptor } from "./bearer-token.js";
/**
 * The reason and metadata of the google.rpc.ErrorInfo every SessionStore
 * error carries, for code that branches on what went wrong.
 */
export {
  errorInfo,
  errorReason,
  SESSIONSTORE_ERROR_DOMAIN,
  type SessionStoreErrorInfo,
} from "./error-info.js";
/**
 * The request, response and session message types, so callers can type what
 * they build and receive without importing generated files by path.
 */
export type {
  DeleteByUserRequest,
  DeleteByUserResponse,
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  ListByUserRequest,
  ListByUserResponse,
  RefreshRequest,
  RefreshResponse,
  Session,
  SessionEvent,
  TouchRequest,
  TouchResponse,
  UpsertRequest,
  UpsertResponse,
  WatchSessionRequest,
  WatchUserRequest,
} from "./gen/sessionstore/v1/session_store_pb.js";
/**
 * The message schemas (for `create`, `toJson`, `toBinary` of
 * @bufbuild/protobuf), the service descriptor (for a transport or client of
 * the caller's own making) and the enums: TokenTransport (of a Session),
 * RefreshOutcome and EventType.
 */
export {
  DeleteByUserRequestSchema,
  DeleteByUserResponseSchema,
  DeleteRequestSchema,
  DeleteResponseSchema,
  EventType,
  GetRequestSchema,
  GetResponseSchema,
  ListByUserRequestSchema,
  ListByUserResponseSchema,
  RefreshOutcome,
  RefreshRequestSchema,
  RefreshResponseSchema,
  SessionEventSchema,
  SessionSchema,
  SessionStoreService,
  TokenTransport,
  TouchRequestSchema,
  TouchResponseSchema,
  UpsertRequestSchema,
  UpsertResponseSchema,
  WatchSessionRequestSchema,
  WatchUserRequestSchema,
} from "./gen/sessionstore/v1/session_store_pb.js";
/**
 * Async iterators over WatchUser and WatchSession that resume from their
 * last event when a stream ends.
 */
export {
  type WatchEventsOptions,
  watchSessionEvents,
  watchUserEvents,
} from "./watch.js";

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

/** The typed SessionStoreService client, named so callers can hold one in a field. */
export type SessionStoreClient = Client<typeof SessionStoreService>;

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
 * Creates a typed client for SessionStoreService over HTTP/2: with
 * prior knowledge on an `http://` baseUrl (how the server listens in
 * cleartext), over TLS with ALPN "h2" on an `https://` one. Each call
 * takes the usual Connect call options, e.g. `{ timeoutMs }` for a deadline
 * or `{ signal }` to cancel.
 *
 * The client keeps one HTTP/2 connection, which does not keep the process
 * alive while idle and closes after 15 idle minutes (connect-node's
 * defaults).
 *
 * @throws TypeError when `token` or `tls` cannot work (see their docs); the
 *   message never contains the token or a key.
 */
export function createSessionStoreClient(options: SessionStoreClientOptions): SessionStoreClient {
  const { baseUrl, protocol = "grpc", useJson = false, token } = options;
  const nodeOptions = tlsOptions(baseUrl, options.tls);
  const interceptors: Interceptor[] = token === undefined ? [] : [bearerTokenInterceptor(token)];
  const common = {
    baseUrl,
    httpVersion: "2",
    interceptors,
    ...(nodeOptions ? { nodeOptions } : {}),
  } as const;
  const transport =
    protocol === "grpc"
      ? createGrpcTransport(common)
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ ...common, useBinaryFormat: !useJson })
        : createConnectTransport({ ...common, useBinaryFormat: !useJson });
  return createClient(SessionStoreService, transport);
}
