/**
 * The floor: a bare node:http2 server that answers every gRPC call with the
 * same canned response after one event-loop turn (as if a Redis reply had
 * arrived), with no framework, store or codec. Whatever latency it shows
 * under a load comes from Node's HTTP/2 stack, its garbage collector and the
 * machine, not from SessionStore.
 *
 * With REDIS_URL set, it answers each call once the Redis work of the
 * service's own call has come back instead: the store's script by EVALSHA
 * (ioredis, default options), with the arguments the service would pass.
 * A Get reads one of the bench's "bench-get" sessions; an Upsert writes one
 * of SESSIONS_PER_KEYED_USER sessions of user "bench-floor", the request's
 * message bytes as the session's data. That is the floor of a Node server doing the service's
 * work: node:http2 and the Redis round trip, no codec, pipeline or checks.
 *
 * Usage: node bare-h2-server.js <hex Get response> [<hex Upsert response>];
 * listens on PORT (0: a free one) and prints {"port": N} once it does.
 */
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { Redis } from "ioredis";
import { userKeys } from "../src/store/redis/redis-keys.js";
import { scriptSource } from "../src/store/redis/redis-session-store.js";
import { KEY_PREFIX, SESSIONS_PER_KEYED_USER, TTL_MS } from "./workload.js";

/** The gRPC frame of a response message given in hex. */
function frameOf(hex: string | undefined): Buffer {
  const message = Buffer.from(hex ?? "", "hex");
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}
const getFrame = frameOf(process.argv[2]);
const upsertFrame = frameOf(process.argv[3]);

const getKeys = userKeys(KEY_PREFIX, "bench-get");
const upsertKeys = userKeys(KEY_PREFIX, "bench-floor");
/** A refresh token digest as long as the service's (base64url of a SHA-256). */
const DIGEST = "f".repeat(43);

interface ScriptCommands {
  floorGet(key: string, sessionId: string): Promise<unknown>;
  floorUpsert(...keysAndArgs: (string | number | Buffer)[]): Promise<unknown>;
}
const redis = process.env.REDIS_URL
  ? (new Redis(process.env.REDIS_URL) as Redis & ScriptCommands)
  : undefined;
redis?.defineCommand("floorGet", { numberOfKeys: 1, lua: scriptSource("get") });
redis?.defineCommand("floorUpsert", { numberOfKeys: 4, lua: scriptSource("upsert") });

let calls = 0;
/**
 * Calls `answer` after one event-loop turn, or once Redis has done the
 * call's work (for an Upsert, with the request message, frame header cut):
 * with false when the script failed or the write was refused, which the
 * call reports as INTERNAL, so that a floor that skipped its work cannot
 * pass for a fast one (the benchmark stops at the first failed call).
 */
function afterWork(upsert: boolean, body: Buffer, answer: (ok: boolean) => void): void {
  if (!redis) {
    setImmediate(answer, true);
    return;
  }
  const sessionId = `s${calls++ % SESSIONS_PER_KEYED_USER}`;
  const work = upsert
    ? redis.floorUpsert(
        upsertKeys.sessions,
        upsertKeys.byExpiry,
        upsertKeys.byId,
        upsertKeys.events,
        sessionId,
        body.subarray(5),
        TTL_MS,
        0,
        "",
        0,
        DIGEST,
      )
    : redis.floorGet(getKeys.sessions, sessionId);
  work.then(
    (reply) => answer(!upsert || (Array.isArray(reply) && reply[0] === 0)),
    () => answer(false),
  );
}

const server = http2.createServer();
server.on("connection", (socket: Socket) => socket.setNoDelay(true));
server.on("stream", (stream, headers) => {
  const upsert = String(headers[":path"]).endsWith("/Upsert");
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => {
    if (upsert) chunks.push(chunk);
  });
  stream.once("end", () => {
    afterWork(upsert, Buffer.concat(chunks), (ok) => {
      if (stream.closed) return;
      stream.respond(
        { ":status": 200, "content-type": "application/grpc+proto" },
        { waitForTrailers: true },
      );
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": ok ? "0" : "13" }));
      stream.end(ok ? (upsert ? upsertFrame : getFrame) : undefined);
    });
  });
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
