/**
 * The browser entry of @sessionstore/client (the `browser` export condition,
 * or explicitly `@sessionstore/client/web`): the same client over the Fetch
 * API. Browsers cannot speak plain gRPC (they expose neither HTTP/2 framing
 * nor trailers), so only gRPC-Web and Connect are offered; the server serves
 * both on its one port, over HTTP/1.1 as well as HTTP/2.
 */
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { type BearerTokenSource, bearerTokenInterceptor } from "./bearer-token.js";
import { SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";

/**
 * Connect's error class and status codes, which every failed call rejects
 * with, so callers can branch on `err.code` without a dependency of their own.
 */
export { Code, ConnectError } from "@connectrpc/connect";
/**
 * The interceptor behind the `token` option and the type of what it takes,
 * for callers who build their own transport or client; the same as the
 * Node entry's.
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
/** Every session of a user, over as many ListByUser pages as it takes. */
export { type ListSessionsOptions, listSessions } from "./list.js";
/**
 * Async iterators over WatchUser and WatchSession that resume from their
 * last event when a stream ends.
 */
export {
  type WatchEventsOptions,
  watchSessionEvents,
  watchUserEvents,
} from "./watch.js";

/**
 * The wire protocols a browser can use with the server. Named as in the Node
 * entry, so code written against either entry compiles against the other
 * when it picks one of these two.
 */
export type SessionStoreProtocol = "grpc-web" | "connect";

/**
 * Options of {@link createSessionStoreClient}: one object, so that options
 * can be added later without breaking callers.
 */
export interface SessionStoreClientOptions {
  /** The server's base URL, e.g. "https://sessions.example.com". */
  readonly baseUrl: string;
  /**
   * Wire protocol; "grpc-web" by default: the browser form of the Node
   * entry's default "grpc", with the same status and metadata semantics.
   */
  readonly protocol?: SessionStoreProtocol;
  /** Use the JSON encoding instead of binary protobuf. */
  readonly useJson?: boolean;
  /**
   * The bearer token sent as `authorization: Bearer <token>` on every call,
   * or a function asked before each call for a token that rotates. TLS is
   * the browser's: use an `https://` baseUrl. Keep long-lived service tokens
   * out of browsers, where any script of the page can read them; give a
   * page a short-lived token of the least scope it needs.
   */
  readonly token?: BearerTokenSource | undefined;
}

/** The typed SessionStoreService client, named so callers can hold one in a field. */
export type SessionStoreClient = Client<typeof SessionStoreService>;

/**
 * Creates a typed client for SessionStoreService over `fetch`. Each call
 * takes the usual Connect call options, e.g. `{ timeoutMs }` for a deadline
 * or `{ signal }` to cancel.
 *
 * @throws TypeError when a fixed `token` is not a valid bearer token (the
 *   message never contains it), or for a protocol browsers cannot speak.
 */
export function createSessionStoreClient(options: SessionStoreClientOptions): SessionStoreClient {
  const { baseUrl, protocol = "grpc-web", useJson = false, token } = options;
  const useBinaryFormat = !useJson;
  const interceptors: Interceptor[] = token === undefined ? [] : [bearerTokenInterceptor(token)];
  switch (protocol) {
    case "grpc-web":
      return createClient(
        SessionStoreService,
        createGrpcWebTransport({ baseUrl, useBinaryFormat, interceptors }),
      );
    case "connect":
      return createClient(
        SessionStoreService,
        createConnectTransport({ baseUrl, useBinaryFormat, interceptors }),
      );
    default:
      // Reached from JavaScript, or from TypeScript that took its types from
      // the Node entry (bundlers pick `browser`; tsc does not unless told).
      throw new Error(
        `protocol ${JSON.stringify(protocol)} is not available in browsers; use "grpc-web" or "connect"`,
      );
  }
}
