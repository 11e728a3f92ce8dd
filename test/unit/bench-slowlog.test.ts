import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  readSlowlog,
  scriptNames,
  slowlogMark,
  startTimingRedisServer,
  summariseSlowlog,
  timeEveryCommand,
} from "../../bench/slowlog.js";
import type { RedisServer } from "../../harness/redis-server.js";

describe("summariseSlowlog", () => {
  it("groups entries by command, slowest first, and names the longest", () => {
    const summary = summariseSlowlog([
      { command: "sessionGet", script: true, micros: 10 },
      { command: "HGET", script: false, micros: 3 },
      { command: "sessionList", script: true, micros: 120 },
      { command: "sessionGet", script: true, micros: 30 },
      { command: "sessionGet", script: true, micros: 20 },
    ]);
    expect(summary.entries).toBe(5);
    expect(summary.longest).toEqual({ command: "sessionList", script: true, micros: 120 });
    expect(summary.byCommand).toEqual([
      {
        command: "sessionList",
        script: true,
        count: 1,
        p50Micros: 120,
        p99Micros: 120,
        maxMicros: 120,
      },
      {
        command: "sessionGet",
        script: true,
        count: 3,
        p50Micros: 20,
        p99Micros: 30,
        maxMicros: 30,
      },
      { command: "HGET", script: false, count: 1, p50Micros: 3, p99Micros: 3, maxMicros: 3 },
    ]);
  });

  it("says nothing was logged for an empty window", () => {
    expect(summariseSlowlog([])).toEqual({ entries: 0, longest: undefined, byCommand: [] });
  });
});

/** A client with the two scripts below defined on it. */
type Scripted = Redis & {
  readSession(key: string): Promise<unknown>;
  unnamedScript(): Promise<unknown>;
};

describe("readSlowlog, against a real redis-server", () => {
  let server: RedisServer;
  let admin: Redis;
  let app: Scripted;
  beforeAll(async () => {
    server = await startTimingRedisServer();
    admin = new Redis(server.url, { connectionName: "admin" });
    app = new Redis(server.url) as Scripted;
    app.defineCommand("readSession", {
      numberOfKeys: 1,
      lua: "return redis.call('GET', KEYS[1])",
    });
    app.defineCommand("unnamedScript", { numberOfKeys: 0, lua: "return 1" });
  });
  afterAll(async () => {
    admin.disconnect();
    app.disconnect();
    await server.stop();
  });

  it("logs nothing until told to, then every command after a mark, scripts by name, no argument kept", async () => {
    const secret = "user-7:session-d41d8cd98f00b204";
    // Each script's first run is an EVAL of its source; none of it is logged yet.
    await app.readSession(secret);
    await app.unnamedScript();
    await app.set(secret, "before");
    expect(await slowlogMark(admin)).toBe(-1);

    await timeEveryCommand(admin);
    await app.set(secret, "before the mark");
    const mark = await slowlogMark(admin);
    await app.readSession(secret);
    await app.unnamedScript();
    await app.set(secret, "payload");
    await admin.echo("from the admin");

    // Names known from another client: the unnamed script is then unknown.
    const known = new Map([...scriptNames(app)].filter(([, name]) => name === "readSession"));
    const entries = await readSlowlog(admin, mark, known, new Set(["admin"]));
    const commands = entries.map((e) => e.command);
    expect(commands).toContain("readSession");
    expect(commands.filter((c) => c === "SET")).toHaveLength(1);
    expect(commands.filter((c) => c.startsWith("EVALSHA "))).toHaveLength(1);
    expect(entries.find((e) => e.command === "readSession")?.script).toBe(true);
    expect(entries.find((e) => e.command === "SET")?.script).toBe(false);
    // The admin's own commands (SLOWLOG, ECHO) are left out.
    expect(commands).not.toContain("SLOWLOG");
    expect(commands).not.toContain("ECHO");
    for (const entry of entries) expect(entry.micros).toBeGreaterThanOrEqual(0);
    expect(JSON.stringify(entries)).not.toContain("session-d41d8cd98f00b204");
    expect(JSON.stringify(entries)).not.toContain("payload");
  });
});
