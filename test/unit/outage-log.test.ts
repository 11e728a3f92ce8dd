import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import { OutageLog } from "../../src/service/errors.js";
import { StoreUnavailableError } from "../../src/store/errors.js";
import { LogCapture } from "../support/test-server.js";

describe("the outage log", () => {
  it("logs the first failure of an interval with its cause, and a count of the rest", () => {
    const logs = new LogCapture();
    let now = 1_000_000;
    const outages = new OutageLog(createLogger("debug", logs), 5000, () => now);
    const cause = new StoreUnavailableError("connection is closed");
    for (let i = 0; i < 1000; i++) {
      outages.failed(cause, "Get");
      now += 1;
    }
    expect(logs.lines).toHaveLength(1);
    expect(JSON.parse(logs.lines[0] as string)).toMatchObject({
      level: "warn",
      msg: "session storage unavailable",
      method: "Get",
    });
    // The next interval's first failure reports the held-back ones first.
    now += 5000;
    outages.failed(cause, "Upsert");
    expect(logs.lines.map((line) => JSON.parse(line))).toMatchObject([
      { msg: "session storage unavailable" },
      { msg: "session storage unavailable: more calls failed the same way", failedCalls: 999 },
      { msg: "session storage unavailable", method: "Upsert" },
    ]);
    outages.report();
    expect(logs.lines).toHaveLength(3);
  });
});
