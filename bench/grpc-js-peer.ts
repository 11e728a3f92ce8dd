/**
 * The yardstick: a minimal @grpc/grpc-js server doing exactly the service's
 * work (its handlers, its codec, its Redis store) so that only the serving
 * stack differs. Run as a child process by the benchmark; prints its port
 * as one JSON line on stdout.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { SessionStoreService } from "../gen/sessionstore/v1/session_store_pb.js";
import { createLogger } from "../src/observability/logger.js";
import { createSessionStoreHandlers } from "../src/service/session-store-service.js";
import { connectRedis } from "../src/store/redis/redis-client.js";
import { RedisSessionStore } from "../src/store/redis/redis-session-store.js";
import { KEY_PREFIX } from "./workload.js";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const logger = createLogger("warn");
const redis = await connectRedis(
  { url: redisUrl, cluster: false, commandTimeoutMs: 1000, connectTimeoutMs: 10_000 },
  logger,
);
const store = new RedisSessionStore({ redis, keyPrefix: KEY_PREFIX, maxSessionsPerUser: 0 });
const handlers = createSessionStoreHandlers({
  store,
  maxTtlSeconds: 34_560_000,
  maxPayloadBytes: 65_536,
  logger,
});

const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
const implementation: grpc.UntypedServiceImplementation = {};
for (const method of SessionStoreService.methods) {
  const handler = handlers[method.localName as keyof typeof handlers] as (
    request: unknown,
    signal: AbortSignal,
    encoded: Uint8Array,
  ) => Promise<{ binary(): Uint8Array }>;
  definition[method.name] = {
    path: `/${SessionStoreService.typeName}/${method.name}`,
    requestStream: false,
    responseStream: false,
    // Like the service, hand the handlers the request's bytes as well.
    requestDeserialize: (bytes: Buffer) => ({ message: fromBinary(method.input, bytes), bytes }),
    requestSerialize: () => Buffer.alloc(0),
    // Handlers return replies that encode themselves, as the service uses them.
    responseSerialize: (reply: unknown) => {
      const bytes = (reply as { binary(): Uint8Array }).binary();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    responseDeserialize: () => ({}),
  };
  implementation[method.name] = (
    call: grpc.ServerUnaryCall<unknown, unknown>,
    callback: grpc.sendUnaryData<unknown>,
  ) => {
    const controller = new AbortController();
    call.on("cancelled", () => controller.abort());
    const { message, bytes } = call.request as { message: unknown; bytes: Buffer };
    handler(message, controller.signal, bytes).then(
      (response) => callback(null, response),
      (error: unknown) => {
        // Connect's codes are gRPC's status numbers.
        const status = error instanceof ConnectError ? error : new ConnectError("internal error");
        callback({ code: status.code as number as grpc.status, details: status.rawMessage });
      },
    );
  };
}

const server = new grpc.Server();
server.addService(definition, implementation);
const address = `${process.env.HOST ?? "127.0.0.1"}:${process.env.PORT ?? "0"}`;
server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
process.on("SIGTERM", () => {
  server.forceShutdown();
  void store.close().then(() => process.exit(0));
});
