import type { DescService, MessageShape } from "@bufbuild/protobuf";
import type { ConnectError, ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import {
  DeleteByUserResponseSchema,
  DeleteResponseSchema,
  RefreshOutcome,
  SessionStoreService,
  UpsertRequestSchema,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import type { Logger } from "../observability/logger.js";
import type { StoreErrorKind } from "../observability/telemetry.js";
import { SessionNotFoundError } from "../store/errors.js";
import { refreshTokenDigest } from "../store/refresh-state.js";
import type { SessionStore, StoredSession, StoreSignal } from "../store/session-store.js";
import { OutageLog, toConnectError } from "./errors.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { encodedReply, messageReply, type Reply } from "./reply.js";
import {
  decodeSession,
  encodeRefreshResponse,
  encodeSessionsResponse,
  storedSession,
} from "./session-codec.js";
import {
  checkGrace,
  checkId,
  checkPayloadDepth,
  checkTimestamp,
  checkTtl,
  floorMs,
  invalid,
  payloadTooDeep,
  payloadTooLarge,
} from "./validate.js";
import type { WatchHandlers } from "./watch.js";

/** What the handlers need: the store, the request limits, and where failures go. */
export interface SessionStoreServiceOptions {
  readonly store: SessionStore;
  /** Upper bound of Upsert's and Touch's ttl. */
  readonly maxTtlSeconds: number;
  /** Upper bound of the protobuf encoding of a session's extra_payload. */
  readonly maxPayloadBytes: number;
  /** Longest grace a Refresh may ask for, ms (default 60 s). */
  readonly maxRefreshGraceMs?: number;
  /** A reused refresh token deletes all of the user's sessions (default: only its own). */
  readonly revokeAllOnReuse?: boolean;
  /** Where store failures are logged (never with ids or payloads). */
  readonly logger: Logger;
  /** Told of every store failure, for metrics. */
  readonly onStoreError?: (kind: StoreErrorKind) => void;
}

/** The SessionStoreService descriptor, for reflection and health. */
export const sessionStoreService: DescService = SessionStoreService;

/**
 * The scope each SessionStoreService method needs below admin: reads need
 * `read`, changes to one session `write`. A method missing here needs
 * `admin` (DeleteByUser, and any method added later until its issue says
 * otherwise), so a new RPC is never open by accident.
 */
export const METHOD_SCOPES: Readonly<Partial<Record<keyof AllMethods, "read" | "write">>> = {
  get: "read",
  listByUser: "read",
  upsert: "write",
  touch: "write",
  delete: "write",
  refresh: "write",
  watchUser: "read",
  watchSession: "read",
};

/** page_size 0 means this many. */
export const DEFAULT_PAGE_SIZE = 100;
/** Larger page sizes are clamped to this. */
export const MAX_PAGE_SIZE = 1000;
/**
 * DeleteByUser keeps at most this many sessions: its Redis script writes
 * each kept one back, and must stay well under 10 ms (about 2 ms at 100 on
 * a busy machine, 30 ms at 1,000).
 */
export const MAX_EXCEPT_SESSION_IDS = 100;

type AllMethods = typeof SessionStoreService.method;
/** The unary methods: those the handlers below serve on every transport. */
type UnaryName = {
  [K in keyof AllMethods]: AllMethods[K]["methodKind"] extends "unary" ? K : never;
}[keyof AllMethods];
type Methods = Pick<AllMethods, UnaryName>;

/**
 * The handlers of every SessionStoreService method, independent of the
 * serving stack: each takes the decoded request, an optional abort signal (a
 * deadline or cancellation) and, when the stack has it, the request's binary
 * encoding; it resolves to the response in message and binary form (see
 * reply.ts).
 */
export type SessionStoreHandlers = {
  [K in keyof Methods]: (
    request: MessageShape<Methods[K]["input"]>,
    signal?: StoreSignal,
    encoded?: Uint8Array,
  ) => Promise<Reply<Methods[K]["output"]>>;
};

/** A response carrying one session (Get, Upsert, Touch). */
function sessionReply(stored: StoredSession) {
  return encodedReply(encodeSessionsResponse([stored]), () => ({ session: decodeSession(stored) }));
}

/**
 * The SessionStoreService handlers: they validate requests, translate between
 * protobuf messages and the store's domain types, pass the RPC's abort
 * signal down so a deadline or cancellation stops the work, and fail only
 * with ConnectErrors: store errors are mapped to status codes here, in one
 * place (see errors.ts), for every transport.
 */
export function createSessionStoreHandlers(
  options: SessionStoreServiceOptions,
): SessionStoreHandlers {
  const handlers = unmappedHandlers(options);
  const outages = new OutageLog(options.logger);
  // A rejection handler rather than an async wrapper: one promise less per call.
  const mapErrors =
    <Q, R>(
      method: string,
      handler: (request: Q, signal?: StoreSignal, encoded?: Uint8Array) => Promise<R>,
    ) =>
    (request: Q, signal?: StoreSignal, encoded?: Uint8Array): Promise<R> =>
      handler(request, signal, encoded).catch((error: unknown) => {
        throw toConnectError(error, options.logger, method, options.onStoreError, outages);
      });
  return {
    get: mapErrors("Get", handlers.get),
    upsert: mapErrors("Upsert", handlers.upsert),
    touch: mapErrors("Touch", handlers.touch),
    delete: mapErrors("Delete", handlers.delete),
    listByUser: mapErrors("ListByUser", handlers.listByUser),
    deleteByUser: mapErrors("DeleteByUser", handlers.deleteByUser),
    refresh: mapErrors("Refresh", handlers.refresh),
  };
}

/** The handlers before error mapping. */
function unmappedHandlers(options: SessionStoreServiceOptions): SessionStoreHandlers {
  const { store, maxTtlSeconds, maxPayloadBytes } = options;
  const maxRefreshGraceMs = options.maxRefreshGraceMs ?? 60_000;
  const revokeAllOnReuse = options.revokeAllOnReuse ?? false;
  return {
    async get(req, signal) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const stored = await store.get(userId, sessionId, signal);
      if (!stored) throw new SessionNotFoundError();
      return sessionReply(stored);
    },

    async upsert(req, signal, encoded) {
      const session = req.session;
      if (!session) throw invalid("session", "is required");
      checkId("session.id", session.id);
      checkId("session.user_id", session.userId);
      checkTimestamp("session.created_at", session.createdAt);
      checkTimestamp("session.refreshed_at", session.refreshedAt);
      checkTimestamp("session.expires_at", session.expiresAt);
      checkPayloadDepth("session.extra_payload", session.extraPayload);
      const { data, payloadBytes } = storedSession(session, encoded);
      if (payloadBytes > maxPayloadBytes)
        throw payloadTooLarge("session.extra_payload", maxPayloadBytes);
      const ttlMs = checkTtl("ttl", req.ttl, maxTtlSeconds);
      const stored = await store.upsert(
        {
          userId: session.userId,
          sessionId: session.id,
          data,
          ttlMs,
          expiresAtMs: session.expiresAt ? floorMs(session.expiresAt) : undefined,
          expectedVersion: req.expectedVersion,
          refreshDigest: refreshTokenDigest(session.refreshTokenId),
        },
        signal,
      );
      return sessionReply(stored);
    },

    async touch(req, signal) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const ttlMs = checkTtl("ttl", req.ttl, maxTtlSeconds);
      const stored = await store.touch(userId, sessionId, ttlMs, signal);
      return sessionReply(stored);
    },

    async delete(req, signal) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const deleted = await store.delete(userId, sessionId, req.expectedVersion, signal);
      return messageReply(DeleteResponseSchema, { deleted });
    },

    async listByUser(req, signal) {
      const userId = checkId("user_id", req.userId);
      if (req.pageSize < 0) throw invalid("page_size", "must not be negative");
      const limit = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
      const after = decodePageToken(req.pageToken);
      const page = await store.listByUser(userId, { after, limit }, signal);
      const last = page.sessions.at(-1);
      const nextPageToken = page.hasMore && last ? encodePageToken(last.sessionId) : "";
      return encodedReply(encodeSessionsResponse(page.sessions, nextPageToken), () => ({
        sessions: page.sessions.map(decodeSession),
        nextPageToken,
      }));
    },

    async deleteByUser(req, signal) {
      const userId = checkId("user_id", req.userId);
      if (req.exceptSessionIds.length > MAX_EXCEPT_SESSION_IDS) {
        throw invalid("except_session_ids", `must list at most ${MAX_EXCEPT_SESSION_IDS} ids`);
      }
      req.exceptSessionIds.forEach((id, i) => {
        checkId(`except_session_ids[${i}]`, id);
      });
      const deleted = await store.deleteByUser(userId, req.exceptSessionIds, signal);
      return messageReply(DeleteByUserResponseSchema, { deletedCount: BigInt(deleted) });
    },

    async refresh(req, signal) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const presented = checkId("presented_refresh_token_id", req.presentedRefreshTokenId);
      const next = checkId("new_refresh_token_id", req.newRefreshTokenId);
      if (next === presented) {
        throw invalid("new_refresh_token_id", "must differ from presented_refresh_token_id");
      }
      const ttlMs = checkTtl("ttl", req.ttl, maxTtlSeconds);
      const graceMs = checkGrace("grace", req.grace, maxRefreshGraceMs);
      const { rotated, session } = await store.refresh(
        {
          userId,
          sessionId,
          presentedDigest: refreshTokenDigest(presented),
          newTokenId: next,
          newDigest: refreshTokenDigest(next),
          ttlMs,
          graceMs,
          revokeAllOnReuse,
        },
        signal,
      );
      const outcome = rotated ? RefreshOutcome.ROTATED : RefreshOutcome.ALREADY_ROTATED;
      return encodedReply(encodeRefreshResponse(session, outcome), () => ({
        session: decodeSession(session),
        outcome,
      }));
    },
  };
}

/**
 * A decoder's recursion limit reached inside a Struct, Value or ListValue.
 * protobuf-es names the message type it was decoding when it stops.
 */
const STRUCT_TOO_DEEP = /google\.protobuf\.(?:Struct|Value|ListValue)\b.*maximum recursion depth/;

/**
 * The answer to a request body that failed to decode, when the decoder's
 * message shows the service's own rule was broken; undefined otherwise (the
 * transport then answers its generic "request is not a valid ...").
 *
 * Why: an UpsertRequest whose extra_payload nests deeper than the decoders'
 * limit (100 levels) never reaches the handler, and binary and JSON
 * decoders count levels differently, so without this one payload would be
 * "too deep" over JSON and "not a valid UpsertRequest" over binary. In an
 * UpsertRequest the only Struct is session.extra_payload, so the limit
 * reached inside one is that field's, and gets the handler's own answer on
 * every protocol.
 */
export function explainUndecodable(
  typeName: string,
  decoderMessage: string,
): ConnectError | undefined {
  if (typeName === UpsertRequestSchema.typeName && STRUCT_TOO_DEEP.test(decoderMessage)) {
    return payloadTooDeep("session.extra_payload");
  }
  return undefined;
}

/** Serves SessionStoreService on a Connect router with `handlers`. */
export function registerSessionStoreService(
  router: ConnectRouter,
  handlers: SessionStoreHandlers,
  watches: WatchHandlers,
): void {
  router.service(SessionStoreService, toServiceImpl(handlers, watches));
}

/** The handlers as a Connect service implementation. */
function toServiceImpl(
  handlers: SessionStoreHandlers,
  watches: WatchHandlers,
): ServiceImpl<typeof SessionStoreService> {
  return {
    get: async (req, ctx) => (await handlers.get(req, ctx.signal)).message(),
    upsert: async (req, ctx) => (await handlers.upsert(req, ctx.signal)).message(),
    touch: async (req, ctx) => (await handlers.touch(req, ctx.signal)).message(),
    delete: async (req, ctx) => (await handlers.delete(req, ctx.signal)).message(),
    listByUser: async (req, ctx) => (await handlers.listByUser(req, ctx.signal)).message(),
    deleteByUser: async (req, ctx) => (await handlers.deleteByUser(req, ctx.signal)).message(),
    refresh: async (req, ctx) => (await handlers.refresh(req, ctx.signal)).message(),
    watchUser: (req, ctx) => watches.watchUser(req, ctx.signal),
    watchSession: (req, ctx) => watches.watchSession(req, ctx.signal),
  };
}
