/**
 * The Node.js entry of @sessionstore/client: every protocol the server
 * speaks (gRPC, gRPC-Web, Connect) over node:http2. Browsers get
 * ./web.ts instead, through the package's `browser` export condition.
 */
import { type Client, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";

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
  Session,
  TouchRequest,
  TouchResponse,
  UpsertRequest,
  UpsertResponse,
} from "./gen/sessionstore/v1/session_store_pb.js";
/**
 * The message schemas (for `create`, `toJson`, `toBinary` of
 * @bufbuild/protobuf), the service descriptor (for a transport or client of
 * the caller's own making) and the TokenTransport enum the Session carries.
 */
export {
  DeleteByUserRequestSchema,
  DeleteByUserResponseSchema,
  DeleteRequestSchema,
  DeleteResponseSchema,
  GetRequestSchema,
  GetResponseSchema,
  ListByUserRequestSchema,
  ListByUserResponseSchema,
  SessionSchema,
  SessionStoreService,
  TokenTransport,
  TouchRequestSchema,
  TouchResponseSchema,
  UpsertRequestSchema,
  UpsertResponseSchema,
} from "./gen/sessionstore/v1/session_store_pb.js";

/** The wire protocols the server speaks, all on one port. */
export type SessionStoreProtocol = "grpc" | "grpc-web" | "connect";

/**
 * Options of {@link createSessionStoreClient}: one object, so that options
 * can be added later without breaking callers.
 */
export interface SessionStoreClientOptions {
  /** The server's base URL, e.g. "http://localhost:50051". */
  readonly baseUrl: string;
  /** Wire protocol; "grpc" by default. */
  readonly protocol?: SessionStoreProtocol;
  /** Use the JSON encoding instead of binary protobuf (Connect and gRPC-Web only). */
  readonly useJson?: boolean;
}

/** The typed SessionStoreService client, named so callers can hold one in a field. */
export type SessionStoreClient = Client<typeof SessionStoreService>;

/**
 * Creates a typed client for SessionStoreService over HTTP/2. The server
 * listens in cleartext with HTTP/2 prior knowledge, so every protocol uses
 * HTTP/2 here. Each call takes the usual Connect call options, e.g.
 * `{ timeoutMs }` for a deadline or `{ signal }` to cancel.
 */
export function createSessionStoreClient(options: SessionStoreClientOptions): SessionStoreClient {
  const { baseUrl, protocol = "grpc", useJson = false } = options;
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl, httpVersion: "2", useBinaryFormat: !useJson })
        : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: !useJson });
  return createClient(SessionStoreService, transport);
}
