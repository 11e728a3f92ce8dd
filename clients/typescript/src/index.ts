/**
 * The Node.js entry of @sessionstore/client: every protocol the server
 * speaks (gRPC, gRPC-Web, Connect) over node:http2, in cleartext or TLS.
 * Browsers get ./web.ts instead, through the package's `browser` export
 * condition.
 */
import { type Client, createClient } from "@connectrpc/connect";
import { SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";
import { createNodeTransport, type SessionStoreClientOptions } from "./node-transport.js";

/**
 * Connect's error class and status codes, which every failed call rejects
 * with, so callers can branch on `err.code` without a dependency of their own.
 */
export { Code, ConnectError } from "@connectrpc/connect";
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
/** Every session of a user, over as many ListByUser pages as it takes. */
export { type ListSessionsOptions, listSessions } from "./list.js";
/**
 * The options of {@link createSessionStoreClient}: where the server is, the
 * protocol, the token and TLS.
 */
export type {
  SessionStoreClientOptions,
  SessionStoreClientTls,
  SessionStoreProtocol,
} from "./node-transport.js";
/**
 * Async iterators over WatchUser and WatchSession that resume from their
 * last event when a stream ends.
 */
export {
  type WatchEventsOptions,
  watchSessionEvents,
  watchUserEvents,
} from "./watch.js";

/** The typed SessionStoreService client, named so callers can hold one in a field. */
export type SessionStoreClient = Client<typeof SessionStoreService>;

/**
 * Creates a typed client for SessionStoreService over HTTP/2: with
 * prior knowledge on an `http://` baseUrl (how the server listens in
 * cleartext), over TLS with ALPN "h2" on an `https://` one. Each call
 * takes the usual Connect call options, e.g. `{ timeoutMs }` for a deadline
 * or `{ signal }` to cancel.
 *
 * The client keeps one HTTP/2 connection (over "grpc", a second one for
 * streaming calls once one is made), which does not keep the process alive
 * while idle and closes after 15 idle minutes (connect-node's defaults,
 * which the SDK's own gRPC transport follows).
 *
 * @throws TypeError when `token` or `tls` cannot work (see their docs); the
 *   message never contains the token or a key.
 */
export function createSessionStoreClient(options: SessionStoreClientOptions): SessionStoreClient {
  return createClient(SessionStoreService, createNodeTransport(options));
}
