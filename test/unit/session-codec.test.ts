import { create, fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import { StructSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  GetResponseSchema,
  ListByUserResponseSchema,
  SessionSchema,
  UpsertRequestSchema,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import {
  decodeSession,
  encodedFieldSize,
  encodeSession,
  encodeSessionsResponse,
  storedSessionFromUpsertRequest,
} from "../../src/service/session-codec.js";
import type { StoredSession } from "../../src/store/session-store.js";
import { sessionFixture } from "../support/fixtures.js";

function stored(id: string, version: bigint, storageExpiresAtMs: number): StoredSession {
  return {
    userId: "u",
    sessionId: id,
    data: encodeSession(sessionFixture("u", id)),
    version,
    storageExpiresAtMs,
    expiresAtMs: undefined,
  };
}

describe("encodeSessionsResponse", () => {
  it("encodes exactly the decoded session with its version and storage_expires_at", () => {
    for (const [version, expiry] of [
      [1n, 1_764_000_000_123],
      [2n ** 40n, 1_764_000_000_000],
      [127n, 1_000],
      [128n, 999],
    ] as const) {
      const session = stored("s", version, expiry);
      const decoded = fromBinary(GetResponseSchema, encodeSessionsResponse([session]));
      expect(decoded).toEqual(create(GetResponseSchema, { session: decodeSession(session) }));
      expect(decoded.session?.version).toBe(version);
      expect(decoded.session?.storageExpiresAt).toEqual(timestampFromMs(expiry));
    }
  });

  it("encodes a page of sessions and its next_page_token", () => {
    const page = [stored("a", 1n, 1_764_000_000_001), stored("b", 3n, 1_764_000_000_002)];
    const decoded = fromBinary(ListByUserResponseSchema, encodeSessionsResponse(page, "tok€n"));
    expect(decoded.sessions).toEqual(page.map(decodeSession));
    expect(decoded.nextPageToken).toBe("tok€n");
    expect(encodeSessionsResponse([], "")).toHaveLength(0);
    expect(
      fromBinary(ListByUserResponseSchema, encodeSessionsResponse([], "t")).nextPageToken,
    ).toBe("t");
  });

  it("keeps fields the schema does not know, as stored", () => {
    const withUnknown = Buffer.concat([
      Buffer.from(encodeSession(sessionFixture("u", "s"))),
      Buffer.of(0xa0, 0x06, 0x2a),
    ]);
    const session = { ...stored("s", 1n, 1_764_000_000_000), data: withUnknown };
    const decoded = fromBinary(GetResponseSchema, encodeSessionsResponse([session]));
    expect(decoded.session?.$unknown).toEqual([
      { no: 100, wireType: 0, data: Uint8Array.of(0x2a) },
    ]);
  });
});

describe("storedSessionFromUpsertRequest", () => {
  const request = (init: Parameters<typeof create<typeof UpsertRequestSchema>>[1]) =>
    toBinary(UpsertRequestSchema, create(UpsertRequestSchema, init));

  it("returns the session's bytes as sent, which decode to the session", () => {
    const session = sessionFixture("u", "s");
    const stored = storedSessionFromUpsertRequest(request({ session, expectedVersion: 3n }));
    expect(stored).toBeDefined();
    expect(fromBinary(SessionSchema, stored?.data as Uint8Array)).toEqual(session);
    expect(stored?.payloadBytes).toBe(encodedFieldSize(encodeSession(session), 9));
  });

  it("drops the output-only version and storage_expires_at", () => {
    const session = sessionFixture("u", "s", {
      version: 9n,
      storageExpiresAt: timestampFromMs(5000),
    });
    const bytes = storedSessionFromUpsertRequest(request({ session }))?.data as Uint8Array;
    expect(fromBinary(SessionSchema, bytes)).toEqual({
      ...session,
      version: 0n,
      storageExpiresAt: undefined,
    });
    expect(bytes).toEqual(encodeSession(session));
  });

  it("declines requests whose session field occurs twice (protobuf merges those)", () => {
    const one = request({ session: sessionFixture("u", "s") });
    expect(storedSessionFromUpsertRequest(Buffer.concat([one, one]))).toBeUndefined();
    expect(storedSessionFromUpsertRequest(request({}))).toBeUndefined();
  });
});

describe("encodedFieldSize", () => {
  it("measures extra_payload as its own protobuf encoding", () => {
    const session = sessionFixture("u", "s");
    const payload = toBinary(StructSchema, fromJson(StructSchema, session.extraPayload ?? {}));
    expect(payload.length).toBeGreaterThan(30);
    expect(encodedFieldSize(encodeSession(session), 9)).toBe(payload.length);
    const bare = sessionFixture("u", "s", { extraPayload: undefined });
    expect(encodedFieldSize(encodeSession(bare), 9)).toBe(0);
  });

  it("rejects truncated input instead of reading past it", () => {
    const bytes = encodeSession(sessionFixture("u", "s"));
    expect(() => encodedFieldSize(bytes.subarray(0, bytes.length - 1), 9)).toThrow("truncated");
  });
});
