/**
 * The shared client scenario, run with the installed @sessionstore/client
 * package (Python's clients/python/examples/scenario.py and Go's
 * clients/go/cmd/scenario run the same steps): insert-only Upsert, Get, a
 * CAS conflict (ABORTED, reason VERSION_MISMATCH), Touch, ListByUser over
 * pages, DeleteByUser with an exception, NOT_FOUND. It prints one
 * "ok <step>" line each and exits 0, or the failed step and exits 1; never
 * ids or tokens.
 *
 *     node scenario.js --target 127.0.0.1:50051 [--ca-file ca.crt] [--token-file token]
 *
 * With --ca-file it connects over TLS (https), else in cleartext.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import {
  Code,
  ConnectError,
  createSessionStoreClient,
  errorReason,
  listSessions,
  type Session,
  type SessionStoreClient,
} from "@sessionstore/client";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    "ca-file": { type: "string" },
    "token-file": { type: "string" },
  },
});
const caFile = values["ca-file"];
const tokenFile = values["token-file"];

class StepFailed extends Error {}

function step(name: string, ok: boolean): void {
  if (!ok) throw new StepFailed(name);
  console.log(`ok ${name}`);
}

/** Runs `call`, which must fail with `code`; the step's line names the error's reason. */
async function failsWith(name: string, code: Code, call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (error) {
    if (!(error instanceof ConnectError) || error.code !== code) throw error;
    step(`${name} reason=${errorReason(error)}`, true);
    return;
  }
  step(`${name} fails with ${Code[code]}`, false);
}

const ids = (sessions: readonly Session[]) => sessions.map((session) => session.id).join(",");

async function all(client: SessionStoreClient, userId: string, pageSize = 0) {
  const sessions: Session[] = [];
  for await (const session of listSessions(client, userId, { pageSize, timeoutMs: 5000 })) {
    sessions.push(session);
  }
  return sessions;
}

async function run(): Promise<void> {
  if (values.target === undefined) throw new StepFailed("--target is required");
  const client = createSessionStoreClient({
    baseUrl: `${caFile === undefined ? "http" : "https"}://${values.target}`,
    token: tokenFile === undefined ? undefined : readFileSync(tokenFile, "utf8").trim(),
    tls: { ca: caFile === undefined ? undefined : readFileSync(caFile) },
  });
  const call = { timeoutMs: 5000 };
  const userId = `user-${randomUUID()}`;
  const ttl = { seconds: 60n };
  const session = { id: "s1", userId, refreshTokenId: "rt-1" };

  const inserted = await client.upsert({ session, ttl, expectedVersion: 0n }, call);
  step("insert-only upsert version=1", inserted.session?.version === 1n);
  await failsWith("insert-only upsert again", Code.AlreadyExists, () =>
    client.upsert({ session, ttl, expectedVersion: 0n }, call),
  );
  const got = await client.get({ userId, sessionId: "s1" }, call);
  step("get", got.session?.version === 1n);
  await client.upsert({ session, ttl, expectedVersion: 1n }, call);
  await failsWith("stale CAS", Code.Aborted, () =>
    client.upsert({ session, ttl, expectedVersion: 1n }, call),
  );
  const touched = await client.touch({ userId, sessionId: "s1", ttl: { seconds: 120n } }, call);
  step("touch keeps the version", touched.session?.version === 2n);
  for (let i = 2; i <= 5; i++) {
    await client.upsert({ session: { id: `s${i}`, userId }, ttl }, call);
  }
  const paged: Session[] = [];
  let pages = 0;
  let pageToken = "";
  do {
    const page = await client.listByUser({ userId, pageSize: 2, pageToken }, call);
    pages++;
    paged.push(...page.sessions);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  step(`list pages=${pages} sessions=${paged.length}`, ids(paged) === "s1,s2,s3,s4,s5");
  step("list all", ids(await all(client, userId, 2)) === ids(paged));
  const { deletedCount } = await client.deleteByUser({ userId, exceptSessionIds: ["s1"] }, call);
  step(`delete-by-user deleted=${deletedCount}`, deletedCount === 4n);
  step("kept", ids(await all(client, userId)) === "s1");
  await failsWith("get deleted", Code.NotFound, () =>
    client.get({ userId, sessionId: "s2" }, call),
  );
  console.log("ok scenario passed");
}

run().catch((error: unknown) => {
  console.error("FAILED", error instanceof StepFailed ? error.message : error);
  process.exitCode = 1;
});
