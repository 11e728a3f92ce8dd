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

/** A user id no other test uses, so tests share one Redis without interfering. */
export function uniqueUserId(): string {
  return `user-${randomUUID()}`;
}

/**
 * (user id, session id) pairs that a careless key layout would mix up:
 * separators, hash-tag braces, percent escapes, glob characters and the
 * index's own suffix, all under users derived from `base`. Every pair must
 * stay a session of its own.
 */
export function idsThatMustStayApart(base: string): [string, string][] {
  return [
    [`${base}:a`, "b"],
    [base, "a:b"],
    [`${base}:a:b`, "s"],
    [`{${base}}`, "s"],
    [`${base}%7B`, "s"],
    [`${base}{`, "s"],
    [`${base}}`, "s"],
    [`${base}}:s:x`, "s"],
    [base, "}:s:x"],
    [base, "{x}"],
    [base, "%7B"],
    [`${base}*`, "s"],
    [`${base}%`, "s"],
    [`${base}%25`, "s"],
    [`${base}%%`, "s"],
    [base, "*"],
    [base, "?"],
    [base, "[a-z]"],
    [`${base}:i`, "s"],
    [base, "i"],
    [`${base}ü€😀`, "€😀"],
  ];
}

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
