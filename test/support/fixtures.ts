import { randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";
import {
  type Session,
  SessionSchema,
  TokenTransport,
} from "../../gen/sessionstore/v1/session_store_pb.js";

/** A fully populated session, as an auth library would store it. */
export function sessionFixture(
  userId: string,
  id: string,
  overrides: MessageInitShape<typeof SessionSchema> = {},
): Session {
  const now = Date.now();
  return create(SessionSchema, {
    id,
    userId,
    refreshTokenId: `rt-${randomUUID()}`,
    createdAt: timestampFromMs(now - 60_000),
    refreshedAt: timestampFromMs(now),
    lastKnownIp: "203.0.113.7",
    tokenSignatureTransport: TokenTransport.COOKIE,
    extraPayload: { roles: ["admin", "dev"], tenant: { id: 42, name: "acme" }, mfa: true },
    ...overrides,
  });
}

/** A Duration of `ms` milliseconds. */
export const ttl = durationFromMs;

/** Asserts that `call` fails with `code`, and with a message containing `text` when given. */
export async function expectCode(
  call: Promise<unknown>,
  code: Code,
  text?: string | RegExp,
): Promise<ConnectError> {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have failed").toBeInstanceOf(ConnectError);
  const connectError = error as ConnectError;
  expect(Code[connectError.code] ?? connectError.code).toBe(Code[code] ?? code);
  if (text !== undefined) expect(connectError.rawMessage).toMatch(text);
  return connectError;
}
