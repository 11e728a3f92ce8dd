import { type Logger, pino } from "pino";

export type { Logger };

/** Log levels LOG_LEVEL accepts, most verbose first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Creates the process logger: JSON lines on stdout (or `destination`).
 *
 * Errors are serialized by {@link safeError}, never by pino's default, which
 * copies every enumerable property: ioredis errors carry the failed command
 * with its arguments (session ids and payloads), and those must never reach
 * a log.
 */
export function createLogger(level: LogLevel, destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { service: "sessionstore" },
    timestamp: pino.stdTimeFunctions.isoTime,
    // "level":"warn" rather than pino's 40: what log pipelines and people read.
    formatters: { level: (label: string) => ({ level: label }) },
    serializers: { err: safeError },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** What is logged of an error: its type, message, code and stack, and its causes'. */
export interface SafeError {
  readonly type: string;
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
  readonly cause?: SafeError;
}

/** Reduces an error to fields that cannot hold request data. */
export function safeError(error: unknown, depth = 0): SafeError {
  if (!(error instanceof Error)) return { type: typeof error, message: "non-error thrown" };
  const code = (error as { code?: unknown }).code;
  return {
    type: error.name,
    message: error.message,
    ...(typeof code === "string" ? { code } : {}),
    ...(error.stack ? { stack: error.stack } : {}),
    ...(error.cause !== undefined && depth < 4 ? { cause: safeError(error.cause, depth + 1) } : {}),
  };
}
