import { fromJson, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { SessionStoreService } from "../../gen/sessionstore/v1/session_store_pb.js";
import type { SessionStore } from "../store/session-store.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { decodeSession, encodeSession } from "./session-codec.js";
import { checkId, checkTimestamp, checkTtl, floorMs, invalid } from "./validate.js";

/** What the handlers need: the store and the request limits. */
export interface SessionStoreServiceOptions {
  readonly store: SessionStore;
  /** Upper bound of Upsert's and Touch's ttl. */
  readonly maxTtlSeconds: number;
  /** Upper bound of the protobuf encoding of a session's extra_payload. */
  readonly maxPayloadBytes: number;
}

/** page_size 0 means this many. */
export const DEFAULT_PAGE_SIZE = 100;
/** Larger page sizes are clamped to this. */
export const MAX_PAGE_SIZE = 1000;

/**
 * The SessionStoreService handlers: they validate requests, translate between
 * protobuf messages and the store's domain types, and pass the RPC's abort
 * signal down so a deadline or cancellation stops the work. Store errors are
 * mapped to status codes by the errorMapping interceptor.
 */
export function createSessionStoreService(
  options: SessionStoreServiceOptions,
): ServiceImpl<typeof SessionStoreService> {
  const { store, maxTtlSeconds, maxPayloadBytes } = options;
  return {
    async get(req, ctx) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const stored = await store.get(userId, sessionId, ctx.signal);
      if (!stored) throw new ConnectError("session not found", Code.NotFound);
      return { session: decodeSession(stored) };
    },

    async upsert(req, ctx) {
      const session = req.session;
      if (!session) throw invalid("session", "is required");
      checkId("session.id", session.id);
      checkId("session.user_id", session.userId);
      checkTimestamp("session.created_at", session.createdAt);
      checkTimestamp("session.refreshed_at", session.refreshedAt);
      checkTimestamp("session.expires_at", session.expiresAt);
      if (session.extraPayload) checkPayloadSize(session.extraPayload, maxPayloadBytes);
      const ttlMs = checkTtl("ttl", req.ttl, maxTtlSeconds);
      const stored = await store.upsert(
        {
          userId: session.userId,
          sessionId: session.id,
          data: encodeSession(session),
          ttlMs,
          expiresAtMs: session.expiresAt ? floorMs(session.expiresAt) : undefined,
          expectedVersion: req.expectedVersion,
        },
        ctx.signal,
      );
      return { session: decodeSession(stored) };
    },

    async touch(req, ctx) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const ttlMs = checkTtl("ttl", req.ttl, maxTtlSeconds);
      const stored = await store.touch(userId, sessionId, ttlMs, ctx.signal);
      return { session: decodeSession(stored) };
    },

    async delete(req, ctx) {
      const sessionId = checkId("session_id", req.sessionId);
      const userId = checkId("user_id", req.userId);
      const deleted = await store.delete(userId, sessionId, req.expectedVersion, ctx.signal);
      return { deleted };
    },

    async listByUser(req, ctx) {
      const userId = checkId("user_id", req.userId);
      if (req.pageSize < 0) throw invalid("page_size", "must not be negative");
      const limit = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : Math.min(req.pageSize, MAX_PAGE_SIZE);
      const after = decodePageToken(req.pageToken);
      const page = await store.listByUser(userId, { after, limit }, ctx.signal);
      const last = page.sessions.at(-1);
      return {
        sessions: page.sessions.map(decodeSession),
        nextPageToken: page.hasMore && last ? encodePageToken(last.sessionId) : "",
      };
    },

    async deleteByUser(req, ctx) {
      const userId = checkId("user_id", req.userId);
      req.exceptSessionIds.forEach((id, i) => {
        checkId(`except_session_ids[${i}]`, id);
      });
      const deleted = await store.deleteByUser(userId, req.exceptSessionIds, ctx.signal);
      return { deletedCount: BigInt(deleted) };
    },
  };
}

/** The payload's protobuf encoding must fit the limit. */
function checkPayloadSize(payload: JsonObject, maxBytes: number): void {
  const size = toBinary(StructSchema, fromJson(StructSchema, payload)).byteLength;
  if (size > maxBytes) {
    throw invalid("session.extra_payload", `must encode to at most ${maxBytes} bytes`);
  }
}
