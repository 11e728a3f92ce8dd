import { randomBytes, randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createSessionStoreClient, type SessionStoreProtocol } from "@sessionstore/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { userKeys } from "../../src/store/redis/redis-keys.js";
import { clientPool } from "../support/clients.js";
import { sessionFixture, ttl } from "../support/fixtures.js";
import { createTestPki } from "../support/pki.js";
import { logLines, runServer, type ServerProcess } from "../support/server-process.js";

let redis: RedisServer;
let server: ServerProcess;

beforeAll(async () => {
  redis = await startRedisServer();
});

afterAll(async () => {
  server?.kill();
  await redis?.stop();
});

describe("logs", () => {
  it("hold one line per RPC, and no ids, tokens, IPs or payloads, whatever happens", async () => {
    // The most verbose setting, with the RPC lines at info.
    server = runServer({
      PORT: "0",
      HOST: "127.0.0.1",
      ADMIN_PORT: "0",
      REDIS_URL: redis.url,
      LOG_LEVEL: "trace",
      RPC_LOG_LEVEL: "info",
    });
    const baseUrl = `http://127.0.0.1:${await server.port()}`;
    const secrets: string[] = [];
    const secret = (kind: string) => {
      const value = `${kind}-${randomUUID()}`;
      secrets.push(value);
      return value;
    };
    let rpcs = 0;
    const count = async (call: Promise<unknown>) => {
      rpcs++;
      return call.then(
        () => "ok",
        (error: unknown) => Code[ConnectError.from(error).code],
      );
    };

    for (const protocol of ["grpc", "connect", "grpc-web"] as SessionStoreProtocol[]) {
      const client = createSessionStoreClient({ baseUrl, protocol });
      const userId = secret("user");
      const sessionId = secret("session");
      const ip = `198.51.100.${secrets.length}`;
      secrets.push(ip);
      const session = sessionFixture(userId, sessionId, {
        refreshTokenId: secret("refresh-token"),
        lastKnownIp: ip,
        extraPayload: { note: secret("payload"), nested: { value: secret("nested-payload") } },
        expiresAt: timestampFromMs(Date.now() + 3_600_000),
      });
      expect(await count(client.upsert({ session, ttl: ttl(60_000), expectedVersion: 0n }))).toBe(
        "ok",
      );
      expect(await count(client.get({ sessionId, userId }))).toBe("ok");
      expect(await count(client.touch({ sessionId, userId, ttl: ttl(60_000) }))).toBe("ok");
      expect(await count(client.listByUser({ userId }))).toBe("ok");
      expect(await count(client.upsert({ session, ttl: ttl(60_000), expectedVersion: 0n }))).toBe(
        "AlreadyExists",
      );
      expect(await count(client.delete({ sessionId, userId, expectedVersion: 7n }))).toBe(
        "Aborted",
      );
      expect(await count(client.get({ sessionId: secret("missing"), userId }))).toBe("NotFound");
      // Invalid input: the id is echoed nowhere, not even in the error.
      expect(await count(client.get({ sessionId: `${secret("bad")}\u0000`, userId }))).toBe(
        "InvalidArgument",
      );
      expect(await count(client.deleteByUser({ userId, exceptSessionIds: [secret("keep")] }))).toBe(
        "ok",
      );
    }

    // An unexpected failure: a record Redis holds that is not one. Its key
    // (with the ids in it) must not reach the error log.
    const admin = redis.client();
    const userId = secret("corrupt-user");
    const sessionId = secret("corrupt-session");
    await admin.hset(userKeys("sessionstore", userId).sessions, sessionId, "garbage");
    admin.disconnect();
    const client = createSessionStoreClient({ baseUrl });
    expect(await count(client.get({ sessionId, userId }))).toBe("Internal");
    // A Redis error reply to a script: ioredis attaches the command and its
    // arguments (ids, the session's bytes) to the error it raises.
    const wrongTypeUser = secret("wrongtype-user");
    const wrongType = redis.client();
    await wrongType.set(userKeys("sessionstore", wrongTypeUser).byExpiry, "not a sorted set");
    wrongType.disconnect();
    const stored = sessionFixture(wrongTypeUser, secret("wrongtype-session"), {
      refreshTokenId: secret("wrongtype-token"),
      extraPayload: { note: secret("wrongtype-payload") },
    });
    expect(await count(client.upsert({ session: stored, ttl: ttl(60_000) }))).toBe("Internal");

    // An outage: UNAVAILABLE, logged with its cause.
    await redis.kill();
    expect(
      await count(client.get({ sessionId: secret("outage"), userId: secret("outage-user") })),
    ).toBe("Unavailable");
    await redis.restart();

    const metrics = await (
      await fetch(`http://127.0.0.1:${await server.adminPort()}/metrics`)
    ).text();
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    const output = server.output.stdout + server.output.stderr;
    for (const value of secrets) {
      expect(output, `a log names ${value}`).not.toContain(value);
      expect(metrics, `a metric names ${value}`).not.toContain(value);
    }

    const lines = logLines(server.output);
    const rpcLines = lines.filter((l) => l.msg === "rpc");
    const ours = rpcLines.filter((l) => String(l.method).startsWith("sessionstore.v1."));
    expect(ours).toHaveLength(rpcs);
    for (const line of ours) {
      expect(line).toMatchObject({
        level: "info",
        method: expect.any(String),
        code: expect.any(String),
      });
      expect(line.durationMs).toEqual(expect.any(Number));
      expect(line.peer).toMatch(/^peer-[0-9a-f]{12}$/);
      expect([line.protocol, line.transport]).toEqual(
        expect.arrayContaining([expect.stringMatching(/^(grpc|grpc-web|connect)$/)]),
      );
      expect(line.transport).toMatch(/^(fast-path|connect-node)$/);
    }
    expect(JSON.stringify(rpcLines)).not.toContain("127.0.0.1");
    expect(ours.map((l) => l.code)).toEqual(
      expect.arrayContaining([
        "OK",
        "NOT_FOUND",
        "ABORTED",
        "ALREADY_EXISTS",
        "INVALID_ARGUMENT",
        "INTERNAL",
        "UNAVAILABLE",
      ]),
    );
    expect(lines.find((l) => l.msg === "unexpected error")).toMatchObject({ level: "error" });
    expect(lines.find((l) => l.msg === "session storage unavailable")).toMatchObject({
      level: "warn",
    });
  });
});

describe("logs of refused callers", () => {
  it("name no token, id, IP or certificate, whatever is refused and at every level", async () => {
    const pki = createTestPki();
    const ca = pki.ca("ca");
    const serverCert = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
    const reader = ca.issue("reader", { san: ["URI:spiffe://test/reader"], usage: "client" });
    const rogue = pki
      .ca("rogue")
      .issue("rogue", { san: ["URI:spiffe://test/reader"], usage: "client" });
    const token = () => randomBytes(24).toString("base64url");
    const readToken = token();
    const writeToken = token();
    const tokensFile = join(pki.dir, "tokens");
    writeFileSync(
      tokensFile,
      `reader read cert:spiffe://test/reader\nwriter write ${writeToken}\nreader read ${readToken}\n`,
    );
    const refused = runServer({
      PORT: "0",
      HOST: "127.0.0.1",
      ADMIN_PORT: "0",
      LOG_LEVEL: "trace",
      RPC_LOG_LEVEL: "info",
      AUTH_TOKENS_FILE: tokensFile,
      TLS_CERT_FILE: serverCert.certFile,
      TLS_KEY_FILE: serverCert.keyFile,
      TLS_CLIENT_CA_FILE: ca.certFile,
    });
    try {
      const port = await refused.port();
      const baseUrl = `https://127.0.0.1:${port}`;
      const secrets = [readToken, writeToken];
      const pool = clientPool(baseUrl, { ca: ca.cert, cert: reader.cert, key: reader.key });
      const client = pool.sessions({ protocol: "connect", binary: false, httpVersion: "1.1" });
      const attempt = (call: Promise<unknown>) =>
        call.then(
          () => "ok",
          (error: unknown) => Code[ConnectError.from(error).code],
        );
      for (const [authorization, expected] of [
        [`Bearer ${token()}`, "Unauthenticated"],
        [`Basic ${token()}`, "Unauthenticated"],
        [`Bearer ${writeToken}`, "Unauthenticated"],
        [`Bearer ${readToken}`, "PermissionDenied"],
      ] as const) {
        secrets.push(authorization);
        const userId = `user-${randomUUID()}`;
        secrets.push(userId);
        const session = sessionFixture(userId, `session-${randomUUID()}`);
        secrets.push(session.id, session.refreshTokenId, session.lastKnownIp);
        expect(
          await attempt(
            client.upsert({ session, ttl: ttl(60_000) }, { headers: { authorization } }),
          ),
        ).toBe(expected);
      }
      pool.close();
      // Refused handshakes: a certificate from another CA, and cleartext.
      for (const options of [{ cert: rogue.cert, key: rogue.key }, {}]) {
        await new Promise<void>((resolve) => {
          const socket = tls.connect({ port, host: "127.0.0.1", ca: ca.cert, ...options });
          socket.once("error", () => resolve());
          socket.once("close", () => resolve());
          socket.resume();
        });
      }
      const plain = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
      expect(plain).toBeUndefined();
      const metrics = await (
        await fetch(`http://127.0.0.1:${await refused.adminPort()}/metrics`)
      ).text();
      expect(metrics).toMatch(/sessionstore_auth_failures_total\{reason="tls_handshake"\} [2-9]/);
      expect(metrics).toMatch(/sessionstore_auth_failures_total\{reason="identity_mismatch"\} 1/);
      refused.child.kill("SIGTERM");
      expect(await refused.exited).toBe(0);
      // Every line but the one that says where the server itself listens.
      const output = (refused.output.stdout + refused.output.stderr)
        .split("\n")
        .filter((line) => !line.includes("SessionStore listening"))
        .join("\n");
      expect(output).toContain("TLS handshake failed");
      const lines = logLines(refused.output).filter((l) => l.msg === "rpc");
      // Refused before it was identified, a caller is anonymous in the log.
      expect(lines.map((l) => l.caller)).toEqual(["anonymous", "anonymous", "anonymous", "reader"]);
      for (const value of [...secrets, "BEGIN", "PRIVATE", "spiffe://", "127.0.0.1"]) {
        expect(output, `a log names ${value}`).not.toContain(value);
        expect(metrics, `a metric names ${value}`).not.toContain(value);
      }
    } finally {
      refused.kill();
      pki.remove();
    }
  });
});
