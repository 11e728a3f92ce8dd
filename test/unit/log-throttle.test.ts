import { describe, expect, it } from "vitest";
import { LogThrottle } from "../../src/observability/log-throttle.js";

describe("LogThrottle", () => {
  it("says to log the first event, then at most once per interval with the count since", () => {
    let now = 1_000;
    const throttle = new LogThrottle(10_000, () => now);
    expect(throttle.count()).toBe(1);
    now += 5_000;
    expect(throttle.count()).toBeUndefined();
    expect(throttle.count()).toBeUndefined();
    now += 4_999;
    expect(throttle.count()).toBeUndefined();
    now += 1;
    expect(throttle.count()).toBe(4);
    now += 60_000;
    expect(throttle.count()).toBe(1);
  });
});
