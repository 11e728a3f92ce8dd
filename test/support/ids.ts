import { randomUUID } from "node:crypto";

// Ids for tests of every layer, the store's included: nothing here loads
// generated code.

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
