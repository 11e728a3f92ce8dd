import net from "node:net";
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import type * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, startRedisServer } from "../../harness/redis-server.js";
import { waitFor } from "../../harness/wait-for.js";
import { quantile, rssMb } from "../support/load.js";
import {
  FLAG,
  FRAME,
  frame,
  goawayCode,
  PREFACE,
  type RawFrame,
  rawFrames,
  requestHeaders,
} from "../support/raw-h2.js";
import { megabytes, retained, runServer, type ServerProcess } from "../support/server-process.js";
import { createGrpcJsClient, type GrpcJsClient } from "../support/test-server.js";

/**
 * HTTP/2 abuse against the one port of a real server process (Redis
 * behind it): each attack runs for a bounded time while a well-behaved
 * gRPC client on its own connection calls Get back to back. Asserted per
 * attack: the process lives, the probe's p99 stays under 50 ms (150 ms
 * while streams are held), the server's RSS (VmRSS) grows by less than
 * RSS_GROWTH_BOUND_MB and what
 * it retains after a full garbage collection by less than
 * RETAINED_GROWTH_BOUND_MB, the attacker is cut off where Node's or our
 * limits say it should be, and a connection the server sends a GOAWAY is
 * closed by the server within CLOSE_AFTER_GOAWAY_MS (not left open until
 * IDLE_TIMEOUT).
 */

const CHAOS = process.env.CHAOS === "1";
/** How long each timed attack runs. */
const ATTACK_MS = CHAOS ? 60_000 : 1500;
/** How long a test may take: an attack, its retries, and the set-up and the checks around them. */
const TEST_TIMEOUT_MS = 3 * ATTACK_MS + 20_000;
const P99_BOUND_MS = 50;
/**
 * The probe's p99 bound while streams are held: the attacker opens
 * thousands of streams in bursts, and the server's work on each (about
 * 0.1 ms on a slow day of a shared 2-core machine) holds the event loop for
 * up to about 100 ms a burst.
 */
const HELD_STREAMS_P99_BOUND_MS = 150;
const RSS_GROWTH_BOUND_MB = CHAOS ? 192 : 64;
/**
 * How much more the server may hold after an attack than before it, each
 * measured after a full garbage collection (V8's heap in use and memory
 * outside it): what a leak would show, where RSS also shows the heap V8
 * grew for the attack and keeps. (Holding 4,000 streams, Node 24's RSS
 * reached +140 MB 15-25 s in and stayed there for the rest of a minute;
 * Node 20's +43 to +52 MB; RSS then rose and fell by 25-40 MB between
 * attacks on both.)
 */
const RETAINED_GROWTH_BOUND_MB = 16;
/** IDLE_TIMEOUT of the server under attack: what cuts off connections that stall mid-headers. */
const IDLE_TIMEOUT_MS = 1000;
/** MAX_CONCURRENT_STREAMS (the default). */
const MAX_STREAMS = 1000;
/** How long the server may keep a connection open once it has sent it a GOAWAY for abuse. */
const CLOSE_AFTER_GOAWAY_MS = 1000;

let redis: RedisServer;
let server: ServerProcess;
let port: number;
let probe: GrpcJsClient;
/** Every attacker socket, destroyed at the end whatever happened. */
const attackers = new Set<net.Socket>();

beforeAll(async () => {
  redis = await startRedisServer();
  server = runServer(
    {
      PORT: "0",
      HOST: "127.0.0.1",
      REDIS_URL: redis.url,
      IDLE_TIMEOUT: `${IDLE_TIMEOUT_MS}ms`,
    },
    [],
    { collectableGarbage: true },
  );
  port = await server.port();
  probe = createGrpcJsClient(port);
  // JIT and connection warm-up, outside every measurement.
  for (let i = 0; i < 300; i++) await probeGet();
});

afterAll(async () => {
  for (const socket of attackers) socket.destroy();
  probe?.close();
  server?.kill();
  await server?.exited;
  await redis?.stop();
});

/** One Get for a session that does not exist: a round trip through the server to Redis. */
async function probeGet(): Promise<void> {
  await probe.call("Get", { sessionId: "probe", userId: "probe" }).catch((error: unknown) => {
    // NOT_FOUND is the answer; anything else is the probe being hurt.
    if ((error as grpc.ServiceError).code !== 5) throw error;
  });
}

/** The server process's resident set, in MB. */
const serverRssMb = () => rssMb(server.child.pid as number);

/** What one scenario measured. */
interface Figures {
  readonly attack: string;
  readonly calls: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly rssBefore: number;
  readonly rssAfter: number;
  /** Growth of what the server holds after a full garbage collection, MB. */
  readonly retainedGrowth: number;
  readonly cutOff: string;
  readonly retried: boolean;
}

const figures: Figures[] = [];

/**
 * Runs `attack` while the probe calls Get back to back on its own
 * connection, until the attack resolves (with how the attacker was cut
 * off). A p99 over the bound is retried, twice at most (this is a 2-core
 * machine shared with the test process and Redis, and some days slower than
 * others: a burst of thousands of frames holds the event loop for longer
 * then), and a retry is reported.
 */
async function underAttack(
  name: string,
  attack: () => Promise<string>,
  p99BoundMs = P99_BOUND_MS,
): Promise<Figures> {
  let result: Figures | undefined;
  for (const attempt of [1, 2, 3]) {
    const retried = attempt > 1;
    // A few calls first: IDLE_TIMEOUT may have closed the probe's connection.
    for (let i = 0; i < 20; i++) await probeGet();
    const retainedBefore = retained(await server.collectGarbage());
    const rssBefore = serverRssMb();
    const latencies: number[] = [];
    let attacking = true;
    const probing = (async () => {
      while (attacking) {
        const start = performance.now();
        await probeGet();
        latencies.push(performance.now() - start);
      }
    })();
    const cutOff = await attack().finally(() => {
      attacking = false;
    });
    await probing;
    const sorted = latencies.sort((a, b) => a - b);
    const round = (n: number) => Math.round(n * 10) / 10;
    result = {
      attack: name,
      calls: sorted.length,
      p50: round(quantile(sorted, 0.5)),
      p99: round(quantile(sorted, 0.99)),
      max: round(sorted.at(-1) ?? Number.NaN),
      rssBefore,
      rssAfter: serverRssMb(),
      retainedGrowth: megabytes(retained(await server.collectGarbage()) - retainedBefore),
      cutOff,
      retried,
    };
    console.log(JSON.stringify(result));
    expect(server.child.exitCode, "the server process died").toBeNull();
    if (result.p99 < p99BoundMs) break;
  }
  if (!result) throw new Error("unreachable");
  figures.push(result);
  expect(result.calls).toBeGreaterThan(0);
  expect(result.p99).toBeLessThan(p99BoundMs);
  expect(result.rssAfter - result.rssBefore).toBeLessThan(RSS_GROWTH_BOUND_MB);
  expect(result.retainedGrowth).toBeLessThan(RETAINED_GROWTH_BOUND_MB);
  return result;
}

/** A raw HTTP/2 (or HTTP/1.1) connection an attacker drives byte by byte. */
interface RawConnection {
  readonly socket: net.Socket;
  readonly frames: RawFrame[];
  /** Whether the server closed it (a connection the attacker dropped is not). */
  readonly closed: () => boolean;
  /** When the server closed it, in ms after it opened (undefined while open). */
  readonly closedAfterMs: () => number | undefined;
  /** How long the server kept it open after its first GOAWAY, in ms (undefined: no GOAWAY, or not closed by the server). */
  readonly closedAfterGoawayMs: () => number | undefined;
  /** The attacker gives up on it: destroys its socket. */
  drop(): void;
  goaway(): RawFrame | undefined;
}

async function openRaw({ http2 = true, read = true } = {}): Promise<RawConnection> {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  attackers.add(socket);
  const opened = performance.now();
  let closedAt: number | undefined;
  let goawayAt: number | undefined;
  let dropped = false;
  socket.once("close", () => {
    if (!dropped) closedAt = performance.now();
    attackers.delete(socket);
  });
  const frames = http2 ? rawFrames(socket) : [];
  // After rawFrames' own listener, so each chunk's frames are parsed when it runs.
  let scanned = 0;
  socket.on("data", () => {
    for (; goawayAt === undefined && scanned < frames.length; scanned++) {
      if (frames[scanned]?.type === FRAME.GOAWAY) goawayAt = performance.now();
    }
  });
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  // An attacker that never reads lets the server's answers pile up.
  if (!read) socket.pause();
  return {
    socket,
    frames,
    closed: () => closedAt !== undefined,
    closedAfterMs: () => (closedAt === undefined ? undefined : Math.round(closedAt - opened)),
    closedAfterGoawayMs: () =>
      closedAt === undefined || goawayAt === undefined
        ? undefined
        : Math.round(closedAt - goawayAt),
    drop: () => {
      dropped = true;
      socket.destroy();
    },
    goaway: () => frames.find((f) => f.type === FRAME.GOAWAY),
  };
}

/** Writes, waiting for the socket to drain (or close): an attacker as fast as TCP lets it be. */
function send(socket: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || socket.write(data)) return resolve();
    const done = () => {
      socket.off("drain", done);
      socket.off("close", done);
      resolve();
    };
    socket.once("drain", done);
    socket.once("close", done);
  });
}

/** The preface and an empty SETTINGS, then (ack) an acknowledgement of the server's SETTINGS. */
function greeting(ack: boolean): Buffer {
  return Buffer.concat([
    PREFACE,
    frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(0)),
    ...(ack ? [frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0))] : []),
  ]);
}

function rstStream(id: number): Buffer {
  const code = Buffer.alloc(4);
  code.writeUInt32BE(0x8); // CANCEL
  return frame(FRAME.RST_STREAM, 0, id, code);
}

/** Counts of a list of words, as "a ×3, b ×1". */
function tally(words: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const word of words) counts.set(word, (counts.get(word) ?? 0) + 1);
  return [...counts].map(([word, count]) => `${word} ×${count}`).join(", ");
}

const ERROR_CODES: Readonly<Record<number, string>> = {
  0: "NO_ERROR",
  1: "PROTOCOL_ERROR",
  2: "INTERNAL_ERROR",
  11: "ENHANCE_YOUR_CALM",
};

/** How a connection ended, from the server's side: its GOAWAY's code, or a bare close. */
function ending(connection: RawConnection): string {
  const goaway = connection.goaway();
  if (goaway) return `GOAWAY ${ERROR_CODES[goawayCode(goaway)] ?? goawayCode(goaway)}`;
  return connection.closed() ? "closed without GOAWAY" : "open";
}

/** The streams the server says it processed in its (first) GOAWAY, by last stream id. */
function streamsBeforeGoaway(connection: RawConnection): number | undefined {
  const goaway = connection.goaway();
  return goaway && (goaway.payload.readUInt32BE(0) + 1) / 2;
}

/** "a-b" of a list of numbers (NaN left out), or "none". */
function range(numbers: readonly (number | undefined)[]): string {
  const known = numbers.filter((n): n is number => n !== undefined && !Number.isNaN(n));
  return known.length === 0 ? "none" : `${Math.min(...known)}-${Math.max(...known)}`;
}

/**
 * The attacker is done with a connection. One the server has sent a GOAWAY
 * is left for the server to close (polled a little past
 * CLOSE_AFTER_GOAWAY_MS); whatever is still open then is dropped.
 */
async function finish(connection: RawConnection): Promise<void> {
  if (connection.goaway() && !connection.closed()) {
    await waitFor("the server to close a connection it sent GOAWAY", () => connection.closed(), {
      timeoutMs: CLOSE_AFTER_GOAWAY_MS + 1000,
      intervalMs: 10,
    }).catch(() => {});
  }
  if (!connection.closed()) connection.drop();
}

/**
 * Every connection the server sent a GOAWAY was closed by the server
 * within CLOSE_AFTER_GOAWAY_MS of it, not left open (until IDLE_TIMEOUT).
 */
function expectClosedAfterGoaway(connections: readonly RawConnection[]): void {
  for (const connection of connections.filter((c) => c.goaway())) {
    expect(
      connection.closedAfterGoawayMs() ?? Number.POSITIVE_INFINITY,
      "ms from the server's GOAWAY to its closing the connection",
    ).toBeLessThan(CLOSE_AFTER_GOAWAY_MS);
  }
}

describe("HTTP/2 abuse against the port", { timeout: TEST_TIMEOUT_MS }, () => {
  it("thousands of concurrent streams: held up to MAX_CONCURRENT_STREAMS, cut off past it", async () => {
    const connections = 4;
    const outcomes: string[] = [];
    const held: RawConnection[] = [];
    await underAttack(
      `${connections} × ${MAX_STREAMS} held streams`,
      async () => {
        const until = performance.now() + ATTACK_MS;
        // Half acknowledge the server's SETTINGS (the limit is then binding),
        // half never do (nghttp2 refuses streams past it one by one).
        const opened = await Promise.all(
          Array.from({ length: connections }, async (_, n) => {
            const connection = await openRaw();
            held.push(connection);
            const ack = n % 2 === 0;
            await send(connection.socket, greeting(ack));
            for (let id = 1; id < 2 * MAX_STREAMS; id += 200) {
              const batch: Buffer[] = [];
              for (let k = id; k < Math.min(id + 200, 2 * MAX_STREAMS); k += 2) {
                batch.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, k, requestHeaders()));
              }
              await send(connection.socket, Buffer.concat(batch));
              await nextTurn();
            }
            return { connection, ack, next: 2 * MAX_STREAMS + 1 };
          }),
        );
        await waitFor("the attack's duration", () => performance.now() >= until, {
          timeoutMs: ATTACK_MS + 5000,
          intervalMs: 50,
        });
        const holding = opened.filter(({ connection }) => !connection.closed()).length;
        // Then streams past the limit, until the server has had enough.
        await Promise.all(
          opened.map(async (entry) => {
            const { connection } = entry;
            let extra = 0;
            const deadline = performance.now() + 5000;
            while (!connection.closed() && performance.now() < deadline) {
              await send(
                connection.socket,
                frame(FRAME.HEADERS, FLAG.END_HEADERS, entry.next, requestHeaders()),
              );
              entry.next += 2;
              extra++;
              await nextTurn();
            }
            await finish(connection);
            const refused = connection.frames.filter(
              (f) => f.type === FRAME.RST_STREAM && f.payload.readUInt32BE(0) === 0x7,
            ).length;
            outcomes.push(
              `${entry.ack ? "acked" : "unacked"}: ${ending(connection)} (last stream ${streamsBeforeGoaway(connection)}), ${refused} REFUSED_STREAM, ${extra} streams sent past the limit, closed ${connection.closedAfterGoawayMs() ?? "never"} ms after the GOAWAY`,
            );
          }),
        );
        return `${holding}/${connections} connections held ${MAX_STREAMS} streams each through the attack; then ${outcomes.join("; ")}`;
      },
      HELD_STREAMS_P99_BOUND_MS,
    );
    for (const outcome of outcomes) expect(outcome).toMatch(/GOAWAY/);
    expectClosedAfterGoaway(held);
  });

  it("unfinished header blocks: stalled ones closed at IDLE_TIMEOUT, endless CONTINUATION cut off", async () => {
    const stalledCount = 200;
    let stalledEnds: string[] = [];
    let floodEnds: string[] = [];
    const floods: RawConnection[] = [];
    await underAttack(`${stalledCount} stalled HEADERS + CONTINUATION flood`, async () => {
      const until = performance.now() + ATTACK_MS;
      // HEADERS without END_HEADERS, and no CONTINUATION ever.
      const stalled = await Promise.all(
        Array.from({ length: stalledCount }, async () => {
          const connection = await openRaw();
          await send(
            connection.socket,
            Buffer.concat([greeting(true), frame(FRAME.HEADERS, 0, 1, requestHeaders())]),
          );
          return connection;
        }),
      );
      // HEADERS without END_HEADERS, then CONTINUATION frames forever
      // (CVE-2024-27983 shape), each a fresh literal header.
      const field = Buffer.concat([
        Buffer.from([0x00, 3]),
        Buffer.from("x-a"),
        Buffer.from([100]),
        Buffer.alloc(100, 0x61),
      ]);
      const continuations = frame(FRAME.CONTINUATION, 0, 1, field);
      while (performance.now() < until) {
        const flood = await openRaw();
        await send(
          flood.socket,
          Buffer.concat([greeting(true), frame(FRAME.HEADERS, 0, 1, requestHeaders())]),
        );
        while (!flood.closed() && performance.now() < until) {
          await send(flood.socket, Buffer.concat(Array.from({ length: 20 }, () => continuations)));
          await nextTurn();
        }
        await finish(flood);
        if (!flood.closed()) break;
        floods.push(flood);
      }
      await waitFor(
        "the stalled connections to be closed",
        () => stalled.every((c) => c.closed()),
        { timeoutMs: IDLE_TIMEOUT_MS * 3 + 2000, intervalMs: 20 },
      );
      const closedAfter = stalled.map((c) => c.closedAfterMs() ?? Number.NaN);
      stalledEnds = stalled.map(ending);
      floodEnds = floods.map(ending);
      return `stalled: ${tally(stalledEnds)}, closed after ${Math.min(...closedAfter)}-${Math.max(...closedAfter)} ms; CONTINUATION flood: ${floods.length} connections, ${tally(floodEnds)}, closed ${range(floods.map((c) => c.closedAfterGoawayMs()))} ms after the GOAWAY`;
    });
    // IDLE_TIMEOUT's GOAWAY, then (see IdleSessions) the socket.
    expect(new Set(stalledEnds)).toEqual(new Set(["GOAWAY NO_ERROR"]));
    // nghttp2's CONTINUATION limit (Node >= 20.12.1, CVE-2024-27983); a
    // GOAWAY the attacker's socket closed before reading counts as cut off too.
    expect(floodEnds.length).toBeGreaterThan(0);
    for (const end of floodEnds) expect(end).toMatch(/GOAWAY INTERNAL_ERROR|closed/);
    expectClosedAfterGoaway(floods);
  });

  it("PING and SETTINGS floods from clients that do not read the answers are cut off", async () => {
    const outcomes: string[] = [];
    const cutOffs = new Map<string, number>();
    /** The connections of the flood that reads the server's answers (and so its GOAWAY). */
    const readers: RawConnection[] = [];
    await underAttack("PING flood + SETTINGS flood", async () => {
      const until = performance.now() + ATTACK_MS;
      const ping = frame(FRAME.PING, 0, 0, Buffer.alloc(8));
      const settings = frame(FRAME.SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]));
      const flood = async (name: string, unit: Buffer, read: boolean) => {
        let connections = 0;
        let sent = 0;
        const ends: string[] = [];
        while (performance.now() < until) {
          const connection = await openRaw({ read });
          connections++;
          await send(connection.socket, greeting(true));
          while (!connection.closed() && performance.now() < until) {
            await send(connection.socket, Buffer.concat(Array.from({ length: 100 }, () => unit)));
            sent += 100;
            await nextTurn();
          }
          if (read) readers.push(connection);
          await finish(connection);
          if (!connection.closed()) break;
          ends.push(ending(connection));
        }
        cutOffs.set(name, ends.length);
        const afterGoaway = read
          ? `, closed ${range(readers.map((c) => c.closedAfterGoawayMs()))} ms after the GOAWAY`
          : "";
        outcomes.push(
          `${name}: ${sent} frames over ${connections} connections, cut off: ${ends.length > 0 ? tally(ends) : "never"}${afterGoaway}`,
        );
      };
      await Promise.all([
        flood("PING, not reading", ping, false),
        flood("SETTINGS, not reading", settings, false),
        flood("PING, reading", ping, true),
      ]);
      return outcomes.join("; ");
    });
    // Answers nobody reads pile up in nghttp2's outbound queue until it
    // gives up on the session (its limit on queued PING and SETTINGS ACKs).
    expect(cutOffs.get("PING, not reading")).toBeGreaterThan(0);
    expect(cutOffs.get("SETTINGS, not reading")).toBeGreaterThan(0);
    expectClosedAfterGoaway(readers);
  });

  it("silent connections and never-ending HTTP/1.1 heads are closed by the port's timeouts", async () => {
    const silentCount = 500;
    const slowCount = 50;
    await underAttack(`${silentCount} silent + ${slowCount} slow HTTP/1.1 heads`, async () => {
      const silent = await Promise.all(
        Array.from({ length: silentCount }, () => openRaw({ http2: false })),
      );
      const slow = await Promise.all(
        Array.from({ length: slowCount }, async () => {
          const connection = await openRaw({ http2: false });
          let answer = "";
          connection.socket.on("data", (chunk: Buffer) => {
            answer += chunk.toString("latin1");
          });
          await send(
            connection.socket,
            Buffer.from("GET /healthz HTTP/1.1\r\nhost: localhost\r\n"),
          );
          return { connection, answer: () => answer };
        }),
      );
      // The slowloris part: one more header byte every 500 ms, never the end of the head.
      const trickle = setInterval(() => {
        for (const { connection } of slow) if (!connection.closed()) connection.socket.write("x");
      }, 500);
      try {
        await waitFor(
          "every silent and slow connection to be closed by the server",
          () => [...silent, ...slow.map((s) => s.connection)].every((c) => c.closed()),
          { timeoutMs: 15_000, intervalMs: 50 },
        );
      } finally {
        clearInterval(trickle);
      }
      const silentAfter = silent.map((c) => c.closedAfterMs() ?? Number.NaN);
      const slowAfter = slow.map((s) => s.connection.closedAfterMs() ?? Number.NaN);
      const statuses = slow.map((s) => /^HTTP\/1\.1 (\d+)/.exec(s.answer())?.[1] ?? "none");
      expect(Math.max(...silentAfter)).toBeLessThan(12_000);
      expect(new Set(statuses)).toEqual(new Set(["408"]));
      return `silent closed after ${Math.min(...silentAfter)}-${Math.max(...silentAfter)} ms; slow heads: ${tally(statuses.map((s) => `HTTP ${s}`))} after ${Math.min(...slowAfter)}-${Math.max(...slowAfter)} ms`;
    });
  }, 30_000);

  // Rapid reset comes last: for 5 s after the port cuts a connection off
  // for it, new HTTP/2 connections from the same address wait 250 ms (see
  // rapid-reset.ts), and every attacker here connects from 127.0.0.1.
  it("rapid reset (CVE-2023-44487): streams opened and cancelled at once are cut off per connection", async () => {
    const connections: RawConnection[] = [];
    await underAttack("rapid reset", async () => {
      const until = performance.now() + ATTACK_MS;
      // One connection at a time, the next as soon as the server closes one.
      while (performance.now() < until) {
        const connection = await openRaw();
        connections.push(connection);
        await send(connection.socket, greeting(true));
        let id = 1;
        while (!connection.closed() && performance.now() < until) {
          const batch: Buffer[] = [];
          for (let i = 0; i < 50; i++, id += 2) {
            batch.push(
              frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, requestHeaders()),
              rstStream(id),
            );
          }
          await send(connection.socket, Buffer.concat(batch));
          await nextTurn();
        }
        await finish(connection);
      }
      const cut = connections.filter((c) => c.closed());
      return `${connections.length} connections, ${cut.length} cut off: ${tally(cut.map(ending))}, after ${range(cut.map(streamsBeforeGoaway))} streams (GOAWAY's last stream id), closed ${range(cut.map((c) => c.closedAfterGoawayMs()))} ms after the GOAWAY`;
    });
    // The port's rapid reset guard (see rapid-reset.ts): a connection that
    // has reset 100 streams before they were served is destroyed at once,
    // GOAWAY ENHANCE_YOUR_CALM, before nghttp2's own limit (GOAWAY
    // INTERNAL_ERROR after a thousand, then on Node 20 a connection left
    // open until IDLE_TIMEOUT). The GOAWAY's last stream id can be a few
    // hundred: what Node read in one go before the cut. A socket closed
    // before its GOAWAY was read is cut off too. Its next connections wait
    // 250 ms before the server reads them.
    const cut = connections.filter((c) => c.closed());
    expect(cut.length).toBeGreaterThan(0);
    for (const connection of cut) {
      expect(["GOAWAY ENHANCE_YOUR_CALM", "closed without GOAWAY"]).toContain(ending(connection));
    }
    for (const streams of cut.map(streamsBeforeGoaway)) {
      if (streams !== undefined) expect(streams).toBeLessThan(1000);
    }
    expectClosedAfterGoaway(connections);
  });

  it("leaves the server answering on a fresh connection", async () => {
    const fresh = createGrpcJsClient(port);
    try {
      await expect(fresh.call("Get", { sessionId: "s", userId: "u" })).rejects.toMatchObject({
        code: 5,
      });
    } finally {
      fresh.close();
    }
    console.log(`figures: ${JSON.stringify(figures)}`);
  });
});
