import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  callDeadline,
  enforceable,
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

describe("enforceable", () => {
  it("serves timeouts a timer can hold as deadlines, longer ones as none", () => {
    expect(enforceable(1)).toBe(true);
    expect(enforceable(MAX_TIMER_MS)).toBe(true);
    expect(enforceable(MAX_TIMER_MS + 1)).toBe(false);
    expect(enforceable(30 * 86_400_000)).toBe(false);
    expect(enforceable(undefined)).toBe(false);
  });
});

describe("callDeadline", () => {
  it("enforces what a timer can hold, serves longer timeouts as none, and passes on a malformed header", () => {
    const before = Date.now();
    const deadline = callDeadline(250);
    expect(deadline.timeoutMs).toBe(250);
    expect(deadline.at).toBeGreaterThanOrEqual(before + 250);
    expect(deadline.error).toBeUndefined();
    expect(callDeadline(MAX_TIMER_MS + 1)).toEqual({
      timeoutMs: undefined,
      at: undefined,
      error: undefined,
    });
    expect(callDeadline(undefined)).toEqual({
      timeoutMs: undefined,
      at: undefined,
      error: undefined,
    });
    const malformed = parseGrpcTimeout("soon");
    expect(callDeadline(malformed).error).toBe(malformed);
  });
});
