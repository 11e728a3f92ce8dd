import { randomBytes } from "node:crypto";
import { type Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RedisServer,
  type RedisServerOptions,
  type RedisUser,
  startRedisCluster,
  startRedisServer,
} from "../../harness/redis-server.js";
import { createLogger } from "../../src/observability/logger.js";
import { connectRedis, type RedisClientOptions } from "../../src/store/redis/redis-client.js";
import { RedisSessionStore } from "../../src/store/redis/redis-session-store.js";
import { uniqueUserId } from "../support/ids.js";
import { ownedForBlock } from "../support/owned.js";
import { createTestPki, type TestCa, type TestPki } from "../support/pki.js";
import { readmeAclRule } from "../support/readme-acl.js";
import { upsertInput } from "./fixtures.js";
import { describeStoreContract } from "./session-store-contract.js";

const logger = createLogger("silent");

/** A distinctive password, so a leak of it cannot be a coincidence. */
function password(): string {
  return `pw-${randomBytes(12).toString("hex")}`;
}

/** One redis-server for the enclosing block, started before its tests and stopped after them. */
function ownRedisServer(
  options: () => RedisServerOptions,
  args: readonly string[] = [],
): () => RedisServer {
  return ownedForBlock(() => startRedisServer(args, options()));
}

/** Connects as the service does, to `server` with `extra` (credentials, TLS). */
function connect(server: RedisServer, extra: Partial<RedisClientOptions> = {}) {
  return connectRedis(
    { url: server.url, cluster: false, commandTimeoutMs: 2000, connectTimeoutMs: 5000, ...extra },
    logger,
  );
}

/** The message connectRedis rejects with. */
async function connectFailure(server: RedisServer, extra: Partial<RedisClientOptions>) {
  const error = await connect(server, { connectTimeoutMs: 1500, ...extra }).then(
    (client) => {
      client.disconnect();
      return undefined;
    },
    (e: unknown) => e as Error,
  );
  expect(error, "the connection to fail").toBeInstanceOf(Error);
  return (error as Error).message;
}

/** Denials in the server's ACL LOG, as "reason object" pairs. */
async function aclDenials(admin: Redis): Promise<string[]> {
  const entries = (await admin.call("ACL", "LOG")) as unknown[][];
  return entries.map((entry) => {
    const field = (name: string) => String(entry[entry.indexOf(name) + 1]);
    return `${field("reason")} ${field("object")}`;
  });
}

const acl = readmeAclRule();
const aclPassword = password();
const aclUser: RedisUser = { name: acl.user, password: aclPassword, rules: acl.rules };

describe("the README's ACL rule", () => {
  // DEBUG enabled (Redis 7 disables it by default), so that only the rule can deny it.
  const server = ownRedisServer(() => ({ users: [aclUser] }), ["--enable-debug-command", "yes"]);

  it("names the service's user and only explicit commands besides -@all", () => {
    expect(acl.user).toBe("sessionstore");
    expect(acl.rules).toContain("~sessionstore:*");
    expect(acl.rules).toContain("resetchannels");
    // Categories would grant what later Redis versions add to them.
    expect(acl.rules.split(" ").filter((rule) => /^[+-]@/.test(rule))).toEqual(["-@all"]);
  });

  describeStoreContract("redis, as the README's ACL user", async ({ maxSessionsPerUser }) => {
    const client = await connect(server(), { username: acl.user, password: aclPassword });
    return new RedisSessionStore({ redis: client, keyPrefix: "sessionstore", maxSessionsPerUser });
  });

  it("left no denial in ACL LOG after the contract and a script cache flush", async () => {
    const admin = server().client();
    const client = await connect(server(), { username: acl.user, password: aclPassword });
    const store = new RedisSessionStore({
      redis: client,
      keyPrefix: "sessionstore",
      maxSessionsPerUser: 1,
    });
    try {
      // Scripts sent in full again (EVAL), eviction past the cap, health probes.
      await admin.script("FLUSH");
      const userId = uniqueUserId();
      await store.upsert(upsertInput(userId, "a"));
      await store.upsert(upsertInput(userId, "b"));
      await store.ping();
      expect(await store.listByUser(userId, { after: undefined, limit: 10 })).toMatchObject({
        sessions: [{ sessionId: "b" }],
      });
      expect(await aclDenials(admin)).toEqual([]);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });

  it("denies other keys, FLUSHALL, KEYS, CONFIG, DEBUG, SCRIPT and Pub/Sub", async () => {
    const admin = server().client();
    await admin.call("ACL", "LOG", "RESET");
    await admin.set("other:key", "kept");
    const user = new Redis({
      ...server().clientOptions,
      username: acl.user,
      password: aclPassword,
    });
    try {
      const denied = async (command: string, ...args: string[]) => {
        const error = await user.call(command, ...args).then(
          () => undefined,
          (e: unknown) => e as Error,
        );
        expect(error?.message, `${command} ${args.join(" ")}`).toMatch(/^NOPERM/);
      };
      await denied("HGET", "other:key", "f");
      await denied("HSET", "other:key", "f", "changed");
      await denied("HGET", "sessionstoreX", "f");
      // Commands the service no longer sends, on its own keys too.
      await denied("GET", "sessionstore:{u}:s:x");
      await denied("FLUSHALL");
      await denied("FLUSHDB");
      await denied("KEYS", "*");
      await denied("SCAN", "0");
      await denied("CONFIG", "GET", "*");
      await denied("DEBUG", "SLEEP", "0");
      await denied("SCRIPT", "FLUSH");
      await denied("PUBLISH", "channel", "message");
      await denied("SELECT", "1");
      // Scripts run with the user's rights: no way around the key pattern.
      await denied("EVAL", "return redis.call('HGET', KEYS[1], 'f')", "1", "other:key");
      // What it may do still works: the denials are the rule's, not a broken login.
      expect(await user.call("HGET", "sessionstore:{u}:h", "x")).toBeNull();
      expect(await admin.get("other:key")).toBe("kept");
      expect((await aclDenials(admin)).length).toBeGreaterThanOrEqual(10);
    } finally {
      user.disconnect();
      admin.disconnect();
    }
  });

  it("refuses a wrong password at once, saying authentication failed without the password", async () => {
    const wrong = password();
    const started = Date.now();
    const message = await connectFailure(server(), {
      username: acl.user,
      password: wrong,
      connectTimeoutMs: 20_000,
    });
    expect(message).toMatch(
      new RegExp(
        `^Redis at 127\\.0\\.0\\.1:${server().port} refused the credentials: authentication failed \\(WRONGPASS`,
      ),
    );
    expect(message).not.toContain(wrong);
    // It did not wait for the connect timeout.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe("the README's ACL rule on a Redis Cluster", () => {
  it("serves every operation, leaving no denial on any node", async () => {
    const cluster = await startRedisCluster(3, { users: [aclUser] });
    const admins = cluster.nodes.map((node) => node.client());
    let client: Redis | Cluster | undefined;
    try {
      client = await connectRedis(
        {
          url: cluster.url,
          cluster: true,
          commandTimeoutMs: 2000,
          connectTimeoutMs: 10_000,
          username: acl.user,
          password: aclPassword,
        },
        logger,
      );
      const store = new RedisSessionStore({
        redis: client,
        keyPrefix: "sessionstore",
        maxSessionsPerUser: 2,
      });
      for (let i = 0; i < 6; i++) {
        const userId = uniqueUserId();
        await store.upsert(upsertInput(userId, "a"));
        await store.upsert(upsertInput(userId, "b"));
        await store.upsert(upsertInput(userId, "c"));
        await store.touch(userId, "c", 30_000);
        expect(await store.get(userId, "c")).toBeDefined();
        expect(
          (await store.listByUser(userId, { after: undefined, limit: 10 })).sessions,
        ).toHaveLength(2);
        await store.delete(userId, "b", undefined);
        expect(await store.deleteByUser(userId, [])).toBe(1);
      }
      await store.ping();
      for (const admin of admins) expect(await aclDenials(admin)).toEqual([]);
    } finally {
      client?.disconnect();
      for (const admin of admins) admin.disconnect();
      await cluster.stop();
    }
  });
});

describe("TLS to Redis", () => {
  let pki: TestPki;
  let ca: TestCa;
  let files: {
    server: { certFile: string; keyFile: string };
    client: { cert: Buffer; key: Buffer; certFile: string; keyFile: string };
  };

  beforeAll(() => {
    pki = createTestPki();
    ca = pki.ca("redis-ca");
    files = {
      server: ca.issue("redis-server", { san: ["IP:127.0.0.1", "DNS:localhost"], usage: "server" }),
      client: ca.issue("sessionstore-client", { san: ["DNS:sessionstore"], usage: "client" }),
    };
  });

  afterAll(() => {
    pki?.remove();
  });

  describe("to a TLS-only server", () => {
    const server = ownRedisServer(() => ({
      tls: { ...files.server, caFile: ca.certFile },
    }));

    it("is what the harness started: rediss:// only, the plain port closed", async () => {
      expect(server().url).toBe(`rediss://127.0.0.1:${server().port}`);
      const admin = server().client();
      try {
        expect(await admin.config("GET", "port")).toEqual(["port", "0"]);
        expect(await admin.config("GET", "tls-port")).toEqual(["tls-port", String(server().port)]);
      } finally {
        admin.disconnect();
      }
    });

    describeStoreContract(
      "redis over TLS (rediss://, a private CA)",
      async ({ maxSessionsPerUser }) => {
        const client = await connect(server(), { tls: { ca: ca.cert } });
        return new RedisSessionStore({ redis: client, keyPrefix: "tls", maxSessionsPerUser });
      },
    );

    it("fails with a clear error when the CA does not sign the server's certificate", async () => {
      const rogue = pki.ca("rogue-ca");
      const message = await connectFailure(server(), { tls: { ca: rogue.cert } });
      // Node names what failed: SELF_SIGNED_CERT_IN_CHAIN when Redis sends its
      // CA along, UNABLE_TO_VERIFY_LEAF_SIGNATURE when it does not.
      expect(message).toMatch(
        new RegExp(
          `^Redis at 127\\.0\\.0\\.1:${server().port} was not ready within 1500 ms ` +
            "\\(TLS: the server's certificate is not trusted \\([A-Z_]+\\)\\)$",
        ),
      );
    });

    it("fails without a CA, since the system CAs do not know the private one", async () => {
      const message = await connectFailure(server(), {});
      expect(message).toContain("TLS: the server's certificate is not trusted");
    });
  });

  describe("to a server that verifies clients, as the README's ACL user", () => {
    const server = ownRedisServer(() => ({
      tls: {
        ...files.server,
        caFile: ca.certFile,
        authClients: true,
        clientCertFile: files.client.certFile,
        clientKeyFile: files.client.keyFile,
      },
      users: [aclUser],
    }));

    describeStoreContract(
      "redis over TLS with a client certificate, as the README's ACL user",
      async ({ maxSessionsPerUser }) => {
        const client = await connect(server(), {
          tls: { ca: ca.cert, cert: files.client.cert, key: files.client.key },
          username: acl.user,
          password: aclPassword,
        });
        return new RedisSessionStore({
          redis: client,
          keyPrefix: "sessionstore",
          maxSessionsPerUser,
        });
      },
    );

    it("is refused without a client certificate", async () => {
      const message = await connectFailure(server(), {
        tls: { ca: ca.cert },
        username: acl.user,
        password: aclPassword,
      });
      // The server's TLS alert, as Node reports it, or the reset that
      // follows it when the alert loses the race (on a busy machine).
      expect(message).toMatch(
        new RegExp(
          `^Redis at 127\\.0\\.0\\.1:${server().port} was not ready within 1500 ms ` +
            "\\((ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ECONNRESET)\\)$",
        ),
      );
    });
  });
});
