import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { expect } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { createLogger } from "../../src/observability/logger.js";
import type { CallPolicy } from "../../src/pipeline/call.js";
import type { Credentials } from "../../src/pipeline/credentials.js";
import { createServer, type ServerOptions, type SessionStoreServer } from "../../src/server.js";
import type { SessionStore } from "../../src/store/session-store.js";
import type { TlsCredentials } from "../../src/transport/listener.js";

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
  /**
   * Asserts that every client connection has gone (the caller closed its
   * clients first), then closes the server: a connection the server keeps
   * after its clients left is a leak.
   */
  stop(): Promise<void>;
}

/** Options of {@link startTestServer}: the server's, with test defaults. */
export interface TestServerOptions {
  /** The loopback port to listen on (a free one otherwise): how a test restarts a server where its clients are. */
  readonly port?: number;
  readonly maxRequestBytes?: number;
  readonly http1HeadersTimeoutMs?: number;
  readonly policies?: readonly CallPolicy[];
  readonly grpcFastPath?: boolean;
  readonly tls?: TlsCredentials;
  readonly credentials?: Credentials;
  readonly reflection?: "open" | "authenticated" | "off";
  readonly healthAuth?: boolean;
  /** REVOKE_ALL_ON_REUSE (default false). */
  readonly revokeAllOnReuse?: boolean;
  /** WATCH_BUFFER (the server's default otherwise). */
  readonly watchBufferEvents?: number;
  /** OpenTelemetry tracing (off otherwise). */
  readonly tracing?: ServerOptions["tracing"];
  /** The limits (RATE_LIMIT, MAX_DEADLINE and the connection limits); the server's defaults otherwise. */
  readonly limits?: Pick<
    ServerOptions,
    | "rateLimit"
    | "maxDeadlineMs"
    | "maxConcurrentStreams"
    | "maxHeaderListSize"
    | "idleTimeoutMs"
    | "maxConnectionsPerPeer"
  >;
}

export async function startTestServer(
  store: SessionStore,
  options: TestServerOptions = {},
): Promise<RunningServer> {
  const logs = new LogCapture();
  const server = createServer({
    store,
    logger: createLogger("debug", logs),
    maxTtlSeconds: 34_560_000,
    maxPayloadBytes: 65_536,
    maxRequestBytes: options.maxRequestBytes ?? 1024 * 1024,
    http1HeadersTimeoutMs: options.http1HeadersTimeoutMs ?? 10_000,
    ...(options.policies ? { policies: options.policies } : {}),
    ...(options.grpcFastPath === undefined ? {} : { grpcFastPath: options.grpcFastPath }),
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    ...(options.reflection ? { reflection: options.reflection } : {}),
    ...(options.healthAuth === undefined ? {} : { healthAuth: options.healthAuth }),
    ...(options.revokeAllOnReuse === undefined
      ? {}
      : { revokeAllOnReuse: options.revokeAllOnReuse }),
    ...(options.watchBufferEvents ? { watchBufferEvents: options.watchBufferEvents } : {}),
    ...(options.tracing ? { tracing: options.tracing } : {}),
    ...options.limits,
  });
  const { port } = await server.listen(options.port ?? 0, "127.0.0.1");
  return {
    server,
    port,
    baseUrl: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    logs,
    async stop() {
      try {
        await waitFor("every client connection to close", () => server.connections === 0, {
          timeoutMs: 5000,
        });
      } finally {
        await server.close(0);
      }
      expect(server.connections).toBe(0);
    },
  };
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
    options?: { deadlineMs?: number; metadata?: grpc.Metadata },
  ): Promise<T>;
  close(): void;
}

/** TLS for a test client: the CA to trust and, for mTLS, a client certificate. */
export interface ClientTls {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export function createGrpcJsClient(port: number, tls?: ClientTls): GrpcJsClient {
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
    tls
      ? grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null)
      : grpc.credentials.createInsecure(),
  ) as unknown as grpc.Client &
    Record<string, grpc.requestCallback<unknown> & ((...args: unknown[]) => void)>;
  return {
    call(method, request, { deadlineMs = 5000, metadata = new grpc.Metadata() } = {}) {
      return new Promise((resolve, reject) => {
        const fn = client[method];
        if (!fn) throw new Error(`no method ${method}`);
        fn.call(
          client,
          request,
          metadata,
          { deadline: Date.now() + deadlineMs },
          (error: unknown, response: unknown) =>
            error ? reject(error) : resolve(response as never),
        );
      });
    },
    close: () => client.close(),
  };
}
