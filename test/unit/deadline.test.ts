import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  callDeadline,
  deadlineExceeded,
  MAX_TIMER_MS,
  parseConnectTimeout,
  parseGrpcTimeout,
} from "../../src/transport/deadline.js";

describe("parseGrpcTimeout", () => {
  it("reads every gRPC unit", () => {
    expect(parseGrpcTimeout("2H")).toBe(7_200_000);
    expect(parseGrpcTimeout("3M")).toBe(180_000);
    expect(parseGrpcTimeout("4S")).toBe(4000);
    expect(parseGrpcTimeout("250m")).toBe(250);
    expect(parseGrpcTimeout("1500u")).toBe(1.5);
    expect(parseGrpcTimeout("2000000n")).toBe(2);
    expect(parseGrpcTimeout("99999999H")).toBe(99_999_999 * 3_600_000);
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
  });

  it("rejects what the gRPC spec does not allow, without quoting it", () => {
    for (const value of ["123456789S", "1s", "", "-1S", "1.5S"]) {
      const error = parseGrpcTimeout(value);
      expect(error).toBeInstanceOf(ConnectError);
      expect((error as ConnectError).code).toBe(Code.InvalidArgument);
      expect((error as ConnectError).rawMessage).toBe("protocol error: invalid grpc-timeout");
    }
  });
});

describe("parseConnectTimeout", () => {
  it("reads whole milliseconds of at most 10 digits", () => {
    expect(parseConnectTimeout("1500")).toBe(1500);
    expect(parseConnectTimeout("9999999999")).toBe(9_999_999_999);
    expect(parseConnectTimeout(undefined)).toBeUndefined();
    expect((parseConnectTimeout("10000000000") as ConnectError).rawMessage).toBe(
      "protocol error: invalid connect-timeout-ms",
    );
    expect(parseConnectTimeout("1.5")).toBeInstanceOf(ConnectError);
  });
});

describe("callDeadline", () => {
  const MAX = 60_000;

  it("keeps a caller's deadline within MAX_DEADLINE", () => {
    const before = Date.now();
    const deadline = callDeadline(250, MAX);
    expect(deadline).toMatchObject({ timeoutMs: 250, error: undefined, capped: false });
    expect(deadline.at).toBeGreaterThanOrEqual(before + 250);
    expect(callDeadline(MAX, MAX)).toMatchObject({ timeoutMs: MAX, capped: false });
  });

  it("serves no deadline, or a longer one, with MAX_DEADLINE", () => {
    const before = Date.now();
    for (const parsed of [undefined, MAX + 1, 30 * 86_400_000, MAX_TIMER_MS + 1]) {
      const deadline = callDeadline(parsed, MAX);
      expect(deadline).toMatchObject({ timeoutMs: MAX, error: undefined, capped: true });
      expect(deadline.at).toBeGreaterThanOrEqual(before + MAX);
    }
  });

  it("passes on a malformed header", () => {
    const malformed = parseGrpcTimeout("soon");
    expect(callDeadline(malformed, MAX)).toEqual({
      timeoutMs: undefined,
      at: undefined,
      error: malformed,
      capped: false,
    });
  });
});

describe("deadlineExceeded", () => {
  it("names MAX_DEADLINE when the server's cap set the deadline", () => {
    expect(deadlineExceeded(callDeadline(100, 500)).rawMessage).toBe("the operation timed out");
    const capped = deadlineExceeded(callDeadline(undefined, 500));
    expect(capped.code).toBe(Code.DeadlineExceeded);
    expect(capped.rawMessage).toBe(
      "the operation timed out: calls may take at most MAX_DEADLINE (500 ms)",
    );
  });
});
