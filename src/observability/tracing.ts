import { context, type Tracer } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";

type ExporterOptions = NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>;

/** OTEL_TRACES_SAMPLER's values that this server supports. */
export const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;
export type SamplerName = (typeof SAMPLERS)[number];

/** What tracing is built from, as config.ts reads it from the OTEL_* variables. */
export interface TracingSettings {
  /** Where spans are POSTed as OTLP/HTTP JSON, e.g. http://collector:4318/v1/traces. */
  readonly url: string;
  /** service.name of the spans' resource. */
  readonly serviceName: string;
  readonly sampler: SamplerName;
  /** The ratio of the traceidratio samplers, from 0 to 1. */
  readonly ratio: number;
  /** Headers sent with every export (OTEL_EXPORTER_OTLP_HEADERS). */
  readonly headers: Readonly<Record<string, string>>;
  /** How long one export may take, ms. */
  readonly timeoutMs: number;
  readonly compression: "gzip" | "none";
  /** PEM CAs an https collector's certificate must chain to; undefined: the system CAs. */
  readonly ca: Buffer | undefined;
  /** PEM client certificate and key for an https collector, or neither. */
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  /** More attributes of the resource (OTEL_RESOURCE_ATTRIBUTES); serviceName wins over a service.name here. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
}

/**
 * The exporter's transport settings when no OTEL_EXPORTER_OTLP_* variable
 * sets them: the specification's defaults (a 10 s timeout, no compression),
 * the system CAs, no client certificate, no headers.
 */
export const EXPORT_DEFAULTS = Object.freeze({
  headers: Object.freeze({}),
  timeoutMs: 10_000,
  compression: "none",
  ca: undefined,
  cert: undefined,
  key: undefined,
  resourceAttributes: Object.freeze({}),
} as const);

/** The tracer the server's spans come from, and its exporter's lifecycle. */
export interface Tracing {
  readonly tracer: Tracer;
  /** Exports every span ended so far. */
  flush(): Promise<void>;
  /** Exports what is left, then stops exporting (graceful shutdown). */
  shutdown(): Promise<void>;
}

/** Options of {@link createTracing}. */
export interface TracingOptions {
  /**
   * "batch" (the default) exports spans in the background, a batch every
   * few seconds, off the calls' path; "simple" exports each span as it
   * ends, for tests that read the receiver right after a call.
   */
  readonly export?: "batch" | "simple";
}

/** The instrumentation scope's name on every span. */
const SCOPE = "sessionstore";

/**
 * Builds the OpenTelemetry SDK for the server's spans: a tracer provider
 * with the configured sampler and an OTLP/HTTP (JSON) exporter. The
 * provider is not registered globally: the server is handed its tracer, so
 * two servers in one process (tests) keep their spans apart. What is global
 * is the AsyncLocalStorage context manager (set once per process), through
 * which the tracing policy makes a call's span the parent of the spans its
 * handler starts.
 *
 * The SDK is built from `settings` alone, which config.ts reads and
 * validates from the OTEL_* variables; the OTLP exporter, which would read
 * its transport variables itself, is given each of them explicitly.
 */
export function createTracing(settings: TracingSettings, options: TracingOptions = {}): Tracing {
  // Returns false when one is set already (a second server in the process).
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  // Every transport setting explicitly, from the validated settings: the
  // exporter would otherwise read the OTEL_EXPORTER_OTLP_* variables itself
  // and skip the ones it cannot use, with a warning to nobody.
  const exporter = new OTLPTraceExporter({
    url: settings.url,
    headers: { ...settings.headers },
    timeoutMillis: settings.timeoutMs,
    compression: settings.compression as NonNullable<ExporterOptions["compression"]>,
    httpAgentOptions: {
      keepAlive: true,
      ...(settings.ca && { ca: settings.ca }),
      ...(settings.cert && { cert: settings.cert }),
      ...(settings.key && { key: settings.key }),
    },
  });
  const processor =
    options.export === "simple"
      ? new SimpleSpanProcessor({ exporter })
      : new BatchSpanProcessor({ exporter });
  const provider = new TracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        ...settings.resourceAttributes,
        "service.name": settings.serviceName,
      }),
    ),
    sampler: samplerOf(settings),
    spanProcessors: [processor],
  });
  return {
    tracer: provider.getTracer(SCOPE),
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

function samplerOf({ sampler, ratio }: TracingSettings): Sampler {
  switch (sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}
