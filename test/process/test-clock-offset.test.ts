import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { expectCode, sessionFixture, ttl } from "../support/fixtures.js";
import { uniqueUserId } from "../support/ids.js";
import {
  clockOffset,
  expiryMs,
  getOrAbsent,
  type Replica,
  startReplica,
} from "../support/replicas.js";
import { logLines, runServer, type ServerProcess } from "../support/server-process.js";

// SESSIONSTORE_TEST_CLOCK_OFFSET_MS through the real entry point: refused
// outside tests, and honest inside them. On the embedded store, the one
// reader of the process's clock, the offset must visibly move expiry and
// the expires_at check; that is what makes the replica tests on Redis
// (service-replicas.test.ts), where it must change nothing, able to fail.

const MINUTES_5 = 5 * 60_000;
const refused: ServerProcess[] = [];
const replicas: Replica[] = [];

afterEach(() => {
  for (const server of refused.splice(0)) server.kill();
});

describe("SESSIONSTORE_TEST_CLOCK_OFFSET_MS at start", () => {
  it.each([
    [{ SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "300000" }],
    [{ SESSIONSTORE_TEST_CLOCK_OFFSET_MS: "300000", SESSIONSTORE_ALLOW_TEST_SETTINGS: "false" }],
  ])("exits 64 naming the setting without the test flag: %o", async (env) => {
    const server = runServer({ PORT: "0", HOST: "127.0.0.1", ...env });
    refused.push(server);
    expect(await server.exited).toBe(64);
    expect(server.output.stderr).toBe(
      "sessionstore: SESSIONSTORE_TEST_CLOCK_OFFSET_MS is a test-only setting: set SESSIONSTORE_ALLOW_TEST_SETTINGS=true to use it, and never in production\n",
    );
    expect(server.output.stdout).toBe("");
  });
});

describe("the embedded store under an offset clock", () => {
  let ahead: Replica;
  let behind: Replica;

  beforeAll(async () => {
    [ahead, behind] = await Promise.all([
      startReplica("ahead", clockOffset(MINUTES_5), replicas),
      startReplica("behind", clockOffset(-MINUTES_5), replicas),
    ]);
  });

  afterAll(async () => {
    await Promise.all(replicas.splice(0).map((replica) => replica.stop()));
  });

  it("warns at start that the clock is offset, and by how much", () => {
    for (const [replica, offset] of [
      [ahead, MINUTES_5],
      [behind, -MINUTES_5],
    ] as const) {
      const warning = logLines(replica.server.output).find((l) =>
        String(l.msg).includes("SESSIONSTORE_TEST_CLOCK_OFFSET_MS"),
      );
      expect(warning).toMatchObject({ level: "warn", clockOffsetMs: offset });
      expect(String(warning?.msg)).toContain("TEST SETTING");
    }
  });

  it("moves the expiry it reports by the offset", async () => {
    for (const [replica, offset] of [
      [ahead, MINUTES_5],
      [behind, -MINUTES_5],
    ] as const) {
      const client = replica.sessions();
      const userId = uniqueUserId();
      const before = Date.now();
      const written = await client.upsert({
        session: sessionFixture(userId, "s"),
        ttl: ttl(60_000),
      });
      const after = Date.now();
      const expiry = expiryMs(written.session);
      expect(expiry, replica.name).toBeGreaterThanOrEqual(before + offset + 60_000);
      expect(expiry, replica.name).toBeLessThanOrEqual(after + offset + 60_000);
    }
  });

  it("judges expires_at by the offset clock", async () => {
    const userId = uniqueUserId();
    // 10 s ahead by the wall clock is 4 min 50 s ago by the clock 5 min ahead...
    await expectCode(
      ahead.sessions().upsert({
        session: sessionFixture(userId, "s", { expiresAt: timestampFromMs(Date.now() + 10_000) }),
        ttl: ttl(60_000),
      }),
      Code.InvalidArgument,
      "session.expires_at must be in the future",
    );
    expect(await getOrAbsent(ahead.sessions(), userId, "s")).toBeUndefined();
    // ...and 10 s ago by the wall clock is 4 min 50 s ahead by the one behind.
    const end = Date.now() - 10_000;
    const client = behind.sessions({ protocol: "connect" });
    const written = await client.upsert({
      session: sessionFixture(userId, "s", { expiresAt: timestampFromMs(end) }),
      ttl: ttl(600_000),
    });
    // Kept until that end, which has passed by the wall clock, and still served.
    expect(expiryMs(written.session)).toBe(end);
    expect(expiryMs(await getOrAbsent(client, userId, "s"))).toBe(end);
  });
});
