import { describe, expect, it } from "vitest";
import {
  formatRate,
  isUnlimited,
  parseRate,
  RATE_SYNTAX,
  refill,
  UNLIMITED,
} from "../../src/pipeline/rate.js";

describe("parseRate", () => {
  it("reads a rate per second, minute or hour, with the burst defaulting to the count", () => {
    expect(parseRate("20/s")).toEqual({ perSecond: 20, burst: 20 });
    expect(parseRate("500/s,burst=1000")).toEqual({ perSecond: 500, burst: 1000 });
    expect(parseRate(" 500/s , burst = 10 ")).toEqual({ perSecond: 500, burst: 10 });
    expect(parseRate("120/m")).toEqual({ perSecond: 2, burst: 120 });
    expect(parseRate("3600/h,burst=1")).toEqual({ perSecond: 1, burst: 1 });
  });

  it("reads off as unlimited", () => {
    expect(parseRate("off")).toBe(UNLIMITED);
    expect(isUnlimited(UNLIMITED)).toBe(true);
    expect(isUnlimited({ perSecond: 1e9, burst: 1 })).toBe(false);
  });

  it.each([
    "",
    "20",
    "20/d",
    "20 /s",
    "-1/s",
    "1.5/s",
    "20/s,",
    "20/s,burst=",
    "20/s;burst=5",
    "20/s,burst=5,burst=6",
    "unlimited",
    "OFF",
  ])("says what it expects for %j", (text) => {
    expect(parseRate(text)).toBe(RATE_SYNTAX);
  });

  it("rejects a zero or huge rate or burst, saying the bounds", () => {
    for (const text of ["0/s", "10/s,burst=0", "2000000000/s", "1/s,burst=9999999999"]) {
      expect(parseRate(text)).toBe(
        `${RATE_SYNTAX}; the rate and burst must be from 1 to 1000000000`,
      );
    }
  });
});

describe("formatRate", () => {
  it("writes a rate in the largest unit that keeps it whole", () => {
    expect(formatRate({ perSecond: 500, burst: 1000 })).toBe("500/s, burst 1000");
    expect(formatRate(parseRate("120/m,burst=3") as never)).toBe("2/s, burst 3");
    expect(formatRate(parseRate("100/m") as never)).toBe("100/m, burst 100");
    expect(formatRate(parseRate("7/h") as never)).toBe("7/h, burst 7");
    expect(formatRate(UNLIMITED)).toBe("off");
  });
});

describe("refill", () => {
  it("adds what the rate refilled since the bucket's time, up to the burst, and moves its time", () => {
    const bucket = { tokens: 0, at: 1_000 };
    refill(bucket, { perSecond: 10, burst: 100 }, 1_250);
    expect(bucket).toEqual({ tokens: 2.5, at: 1_250 });
    refill(bucket, { perSecond: 10, burst: 100 }, 100_000);
    expect(bucket).toEqual({ tokens: 100, at: 100_000 });
    // A clock that went back refills nothing.
    refill(bucket, { perSecond: 10, burst: 100 }, 90_000);
    expect(bucket.tokens).toBe(100);
  });
});
