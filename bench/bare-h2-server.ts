/**
 * The floor: a bare node:http2 server that answers every gRPC call with the
 * same canned response after one event-loop turn (as if a Redis reply had
 * arrived), with no framework, store or codec. Whatever latency it shows
 * under a load comes from Node's HTTP/2 stack, its garbage collector and the
 * machine, not from SessionStore.
 *
 * With REDIS_URL set, it answers each call once a GET of one key (ioredis,
 * default options) has come back instead: the same floor with the Redis
 * round trip every Get of the service makes.
 *
 * Usage: node bare-h2-server.js <hex response message>; listens on PORT
 * (0: a free one) and prints {"port": N} once it does.
 */
import http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { Redis } from "ioredis";

const message = Buffer.from(process.argv[2] ?? "", "hex");
const frame = Buffer.alloc(5 + message.length);
frame.writeUInt32BE(message.length, 1);
message.copy(frame, 5);

const redis = process.env.REDIS_URL ? new Redis(process.env.REDIS_URL) : undefined;
/** Calls `answer` after one event-loop turn, or once Redis has answered a GET. */
const afterWork = redis
  ? (answer: () => void) => redis.get("bench-floor").then(answer, answer)
  : (answer: () => void) => setImmediate(answer);

const server = http2.createServer();
server.on("connection", (socket: Socket) => socket.setNoDelay(true));
server.on("stream", (stream) => {
  stream.on("data", () => {});
  stream.once("end", () => {
    afterWork(() => {
      if (stream.closed) return;
      stream.respond(
        { ":status": 200, "content-type": "application/grpc+proto" },
        { waitForTrailers: true },
      );
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
