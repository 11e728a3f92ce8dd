import { Code, type ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { Call, Caller } from "../../src/pipeline/call.js";
import { UNLIMITED } from "../../src/pipeline/rate.js";
import { rateLimitPolicy } from "../../src/pipeline/rate-limit-policy.js";

function callFrom(address: string, caller?: Caller): Call {
  return {
    procedure: "test.v1.Service/Method",
    protocol: "grpc",
    transport: "test",
    httpVersion: "2",
    headers: { get: () => undefined },
    peer: { address, certificate: undefined },
    deadline: undefined,
    signal: new AbortController().signal,
    caller,
  };
}

/** The rejection of a call, or undefined when it was admitted. */
function attempt(policy: ReturnType<typeof rateLimitPolicy>, call: Call): ConnectError | undefined {
  try {
    policy.begin(call);
    return undefined;
  } catch (error) {
    return error as ConnectError;
  }
}

describe("rateLimitPolicy", () => {
  it("admits a burst, then rejects with the limit, the wait and the pushback until tokens refill", () => {
    let now = 1_000_000;
    const limited: (string | undefined)[] = [];
    const policy = rateLimitPolicy({
      rate: { perSecond: 2, burst: 3 },
      now: () => now,
      onLimited: (caller) => limited.push(caller),
    });
    for (let i = 0; i < 3; i++) expect(attempt(policy, callFrom("10.0.0.1"))).toBeUndefined();
    const rejected = attempt(policy, callFrom("10.0.0.1"));
    expect(rejected?.code).toBe(Code.ResourceExhausted);
    expect(rejected?.rawMessage).toBe(
      "rate limit exceeded (RATE_LIMIT 2/s, burst 3); retry after 500 ms",
    );
    expect(rejected?.metadata.get("grpc-retry-pushback-ms")).toBe("500");
    expect(rejected?.metadata.get("retry-after")).toBe("1");
    expect(rejected?.rawMessage).not.toContain("10.0.0.1");
    expect(limited).toEqual([undefined]);
    now += 499;
    expect(attempt(policy, callFrom("10.0.0.1"))?.rawMessage).toContain("retry after 1 ms");
    now += 1;
    expect(attempt(policy, callFrom("10.0.0.1"))).toBeUndefined();
    // Another address has its own bucket.
    expect(attempt(policy, callFrom("10.0.0.2"))).toBeUndefined();
  });

  it("keys identified callers by name at their own rate, and names neither in the message", () => {
    const now = 0;
    const policy = rateLimitPolicy({ rate: { perSecond: 1, burst: 1 }, now: () => now });
    const billing: Caller = { name: "billing", rate: { perSecond: 1, burst: 2 } };
    const audit: Caller = { name: "audit", rate: undefined };
    // Two addresses, one caller: one bucket of 2.
    expect(attempt(policy, callFrom("10.0.0.1", billing))).toBeUndefined();
    expect(attempt(policy, callFrom("10.0.0.2", billing))).toBeUndefined();
    const rejected = attempt(policy, callFrom("10.0.0.3", billing));
    expect(rejected?.rawMessage).toBe(
      "rate limit exceeded (this caller's own limit 1/s, burst 2); retry after 1000 ms",
    );
    expect(rejected?.rawMessage).not.toContain("billing");
    // The default applies to a caller without its own rate, in its own bucket.
    expect(attempt(policy, callFrom("10.0.0.1", audit))).toBeUndefined();
    expect(attempt(policy, callFrom("10.0.0.1", audit))?.rawMessage).toContain("RATE_LIMIT 1/s");
    // And anonymous calls from 10.0.0.1 are apart from both callers.
    expect(attempt(policy, callFrom("10.0.0.1"))).toBeUndefined();
  });

  it("lets a caller's own UNLIMITED rate lift the default, and an unlimited default costs no bucket", () => {
    const policy = rateLimitPolicy({ rate: UNLIMITED });
    for (let i = 0; i < 100; i++) expect(attempt(policy, callFrom("10.0.0.1"))).toBeUndefined();
    expect(policy.buckets).toBe(0);
    const strict = rateLimitPolicy({ rate: { perSecond: 1, burst: 1 } });
    const trusted: Caller = { name: "trusted", rate: UNLIMITED };
    for (let i = 0; i < 100; i++) {
      expect(attempt(strict, callFrom("10.0.0.1", trusted))).toBeUndefined();
    }
  });

  it("keeps memory bounded: refilled buckets are dropped, and never more than maxBuckets", () => {
    let now = 0;
    const policy = rateLimitPolicy({
      rate: { perSecond: 1, burst: 5 },
      now: () => now,
      maxBuckets: 1000,
    });
    for (let i = 0; i < 5000; i++) {
      attempt(policy, callFrom(`10.0.${i >> 8}.${i & 255}`));
      expect(policy.buckets).toBeLessThanOrEqual(1000);
    }
    expect(policy.buckets).toBe(1000);
    // A bucket of 5 at 1/s is full again 1 s after its one call; the next
    // call after the sweep period finds only its own.
    now += 1000;
    attempt(policy, callFrom("192.0.2.1"));
    expect(policy.buckets).toBe(1);
    // A drained peer keeps its bucket (and its limit) across a sweep.
    for (let i = 0; i < 6; i++) attempt(policy, callFrom("192.0.2.2"));
    now += 1000;
    for (let i = 0; i < 5; i++) attempt(policy, callFrom("192.0.2.3"));
    expect(policy.buckets).toBe(2);
  });
});
