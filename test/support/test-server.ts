import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createLogger } from "../../src/observability/logger.js";
import { createServer, type SessionStoreServer } from "../../src/server.js";
import type { SessionStore } from "../../src/store/session-store.js";

/** Log lines written by a server under test, for assertions on what is (not) logged. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    callback();
  }

  get text(): string {
    return this.lines.join("\n");
  }
}

/** A SessionStore server listening on a free loopback port. */
export interface RunningServer {
  readonly server: SessionStoreServer;
  readonly port: number;
  readonly baseUrl: string;
  readonly logs: LogCapture;
}

export async function startTestServer(
  store: SessionStore,
  { maxRequestBytes = 1024 * 1024, http1HeadersTimeoutMs = 10_000 } = {},
): Promise<RunningServer> {
  const logs = new LogCapture();
  const server = createServer({
    store,
    logger: createLogger("debug", logs),
    maxTtlSeconds: 34_560_000,
    maxPayloadBytes: 65_536,
    maxRequestBytes,
    http1HeadersTimeoutMs,
  });
  const { port } = await server.listen(0, "127.0.0.1");
  return { server, port, baseUrl: `http://127.0.0.1:${port}`, logs };
}

/**
 * A plain @grpc/grpc-js client built from proto/ by @grpc/proto-loader
 * (protobuf.js): an independent gRPC stack and codec, as a polyglot caller's
 * would be. Calls resolve with the response object or reject with the
 * grpc-js ServiceError.
 */
export interface GrpcJsClient {
  call<T = Record<string, unknown>>(
    method: string,
    request: Record<string, unknown>,
    options?: { deadlineMs?: number },
  ): Promise<T>;
  close(): void;
}

export function createGrpcJsClient(port: number): GrpcJsClient {
  const definition = protoLoader.loadSync("sessionstore/v1/session_store.proto", {
    includeDirs: ["proto"],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    sessionstore: { v1: { SessionStoreService: grpc.ServiceClientConstructor } };
  };
  const client = new loaded.sessionstore.v1.SessionStoreService(
    `127.0.0.1:${port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client &
    Record<string, grpc.requestCallback<unknown> & ((...args: unknown[]) => void)>;
  return {
    call(method, request, { deadlineMs = 5000 } = {}) {
      return new Promise((resolve, reject) => {
        const fn = client[method];
        if (!fn) throw new Error(`no method ${method}`);
        fn.call(
          client,
          request,
          { deadline: Date.now() + deadlineMs },
          (error: unknown, response: unknown) =>
            error ? reject(error) : resolve(response as never),
        );
      });
    },
    close: () => client.close(),
  };
}
