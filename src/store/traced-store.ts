import { SpanKind, SpanStatusCode, type Tracer, trace } from "@opentelemetry/api";
import { StoreUnavailableError } from "./errors.js";
import type { SessionStore } from "./session-store.js";

/** db.system of the store's spans: which backend the store is. */
export type StoreSystem = "redis" | "memory";

/** The SessionStore methods that answer one request, and are traced. */
const TRACED = [
  "get",
  "upsert",
  "refresh",
  "touch",
  "delete",
  "listByUser",
  "deleteByUser",
  "readEvents",
] as const;

/**
 * The store with a span around each request it answers ("store.get",
 * "store.upsert", ...), a child of the RPC's span (the active context the
 * tracing policy sets), so a trace shows how much of a call the store took.
 * Calls outside a recorded span (an RPC not sampled) get none.
 * A Redis store's spans are CLIENT spans (a call to another service), the
 * embedded store's INTERNAL ones. Attributes: db.system and
 * db.operation.name only, never an id or a key; a failure adds error.type
 * (the error's class name) and, when the store itself failed (not an answer
 * such as "not found"), the ERROR status.
 *
 * watch, ping and close pass through: a watch lasts as long as its stream
 * (the RPC's span covers it) and pings are health probes, not calls.
 */
export function tracedStore(
  store: SessionStore,
  tracer: Tracer,
  system: StoreSystem,
): SessionStore {
  const kind = system === "redis" ? SpanKind.CLIENT : SpanKind.INTERNAL;
  const traced =
    <A extends unknown[], R>(method: (typeof TRACED)[number], run: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> =>
      // Only under a recorded RPC span: one that is not recorded would have
      // an unrecorded child too (every sampler the server offers decides a
      // child as its parent), so skipping it costs nothing but its price.
      trace.getActiveSpan()?.isRecording() !== true
        ? run(...args)
        : tracer.startActiveSpan(
            `store.${method}`,
            { kind, attributes: { "db.system": system, "db.operation.name": method } },
            async (span) => {
              try {
                return await run(...args);
              } catch (error) {
                span.setAttribute("error.type", error instanceof Error ? error.name : "unknown");
                if (error instanceof StoreUnavailableError || !isAnswer(error)) {
                  span.setStatus({ code: SpanStatusCode.ERROR });
                }
                throw error;
              } finally {
                span.end();
              }
            },
          );
  return {
    get: traced("get", store.get.bind(store)),
    upsert: traced("upsert", store.upsert.bind(store)),
    refresh: traced("refresh", store.refresh.bind(store)),
    touch: traced("touch", store.touch.bind(store)),
    delete: traced("delete", store.delete.bind(store)),
    listByUser: traced("listByUser", store.listByUser.bind(store)),
    deleteByUser: traced("deleteByUser", store.deleteByUser.bind(store)),
    readEvents: traced("readEvents", store.readEvents.bind(store)),
    watch: store.watch.bind(store),
    ping: store.ping.bind(store),
    close: store.close.bind(store),
  };
}

/**
 * The store's answers that are errors in TypeScript but not failures: the
 * domain errors of errors.ts and session-events.ts, all named *Error with
 * a fixed name, other than StoreUnavailableError and its kind.
 */
const ANSWERS = new Set([
  "SessionNotFoundError",
  "SessionExistsError",
  "VersionMismatchError",
  "ExpiresAtPassedError",
  "RefreshTokenReusedError",
  "RefreshStateMissingError",
  "EventsExpiredError",
  "EventsDisabledError",
  "RangeError",
]);

function isAnswer(error: unknown): boolean {
  return error instanceof Error && ANSWERS.has(error.name);
}
