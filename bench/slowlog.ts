/**
 * Redis's SLOWLOG as a timer of every command: a redis-server started with
 * `slowlog-log-slower-than 0` logs each command with its server-side
 * duration (a Lua script's entry is the whole script). An entry also holds
 * the command's arguments (keys, so user and session ids); only the duration
 * and the command's name are ever read from it.
 */
import type { Redis } from "ioredis";
import { type RedisServer, startRedisServer } from "../harness/redis-server.js";
import { quantile } from "./stats.js";

/** One logged command: how long Redis spent on it, and what it was. */
export interface SlowlogEntry {
  readonly micros: number;
  /** The command's name; a script run by SHA is named after its defineCommand name. */
  readonly command: string;
  /**
   * Whether it ran a Lua script (EVALSHA, EVAL). The commands a script
   * calls are logged too, as entries of their own after it, each within
   * the script's time.
   */
  readonly script: boolean;
}

/** Server-side time of one kind of command over a window. */
export interface CommandTimes {
  readonly command: string;
  readonly script: boolean;
  readonly count: number;
  readonly p50Micros: number;
  readonly p99Micros: number;
  readonly maxMicros: number;
}

/** What SLOWLOG logged over a window, by command, the slowest first. */
export interface SlowlogSummary {
  readonly entries: number;
  /** The longest single command, or undefined when nothing was logged. */
  readonly longest: SlowlogEntry | undefined;
  readonly byCommand: readonly CommandTimes[];
}

/** Holds about 10^6 entries: far more than a benchmark window logs, and memory only when used. */
const MAX_LEN = 1_000_000;

/**
 * A private redis-server whose SLOWLOG can hold every command, logging
 * nothing until timeEveryCommand: seeding logs no entries, which Redis
 * would otherwise have to free, in its main thread, when the log is reset
 * or wraps around.
 */
export function startTimingRedisServer(): Promise<RedisServer> {
  return startRedisServer([
    "--slowlog-log-slower-than",
    "-1",
    "--slowlog-max-len",
    String(MAX_LEN),
  ]);
}

/**
 * The scripts defined on `redis` with defineCommand (as RedisSessionStore
 * does), by their SHA1: the name a script's EVALSHA entry is reported under.
 * Another process that defines the same scripts runs them by the same SHAs.
 */
export function scriptNames(redis: Redis): Map<string, string> {
  const scripts = redis.scriptsSet as Record<string, { sha: string }>;
  return new Map(Object.entries(scripts).map(([name, script]) => [script.sha, name]));
}

/** From now on, SLOWLOG logs every command. */
export async function timeEveryCommand(admin: Redis): Promise<void> {
  await admin.call("CONFIG", "SET", "slowlog-log-slower-than", "0");
}

/**
 * The start of a window: the id of the latest entry so far (-1 if none).
 * Marking rather than resetting keeps Redis from freeing the log's earlier
 * entries while the window is measured.
 */
export async function slowlogMark(admin: Redis): Promise<number> {
  const [latest] = (await admin.call("SLOWLOG", "GET", "1")) as [number][][];
  return latest ? Number(latest[0]) : -1;
}

/**
 * Every entry logged after `mark`, except those of the clients named in
 * `ignoredClients` (CLIENT SETNAME; the benchmark's own connections).
 * Fails rather than report a window SLOWLOG could not hold.
 */
export async function readSlowlog(
  admin: Redis,
  mark: number,
  names: ReadonlyMap<string, string>,
  ignoredClients: ReadonlySet<string>,
): Promise<SlowlogEntry[]> {
  const reply = (await admin.call("SLOWLOG", "GET", "-1")) as unknown[][];
  const oldest = Number(reply.at(-1)?.[0] ?? mark + 1);
  if (oldest > mark + 1)
    throw new Error(`SLOWLOG lost ${oldest - mark - 1} entries of the window: it holds ${MAX_LEN}`);
  return parseSlowlog(
    reply.filter((raw) => Number(raw[0]) > mark),
    names,
    ignoredClients,
  );
}

/**
 * A SLOWLOG GET reply as entries. Each raw entry is [id, unix time,
 * microseconds, [command, ...arguments], client address, client name];
 * of the arguments only an EVALSHA's first (the script's SHA) is looked at.
 */
export function parseSlowlog(
  reply: unknown,
  names: ReadonlyMap<string, string>,
  ignoredClients: ReadonlySet<string>,
): SlowlogEntry[] {
  if (!Array.isArray(reply)) throw new Error("SLOWLOG GET did not answer an array");
  const entries: SlowlogEntry[] = [];
  for (const raw of reply as unknown[][]) {
    const [, , micros, args, , client] = raw;
    if (typeof client === "string" && ignoredClients.has(client)) continue;
    if (!Array.isArray(args)) throw new Error("a SLOWLOG entry without its command");
    entries.push({ micros: Number(micros), ...commandName(args.map(String), names) });
  }
  return entries;
}

function commandName([command = "", first = ""]: string[], names: ReadonlyMap<string, string>) {
  const upper = command.toUpperCase();
  if (upper === "EVALSHA")
    return { command: names.get(first) ?? `EVALSHA ${first.slice(0, 8)}`, script: true };
  // EVAL's first argument is a script's source, not a name.
  return { command: upper, script: upper === "EVAL" };
}

/** Entries summed up by command, the one with the longest entry first. */
export function summariseSlowlog(entries: readonly SlowlogEntry[]): SlowlogSummary {
  const byCommand = new Map<string, { script: boolean; micros: number[] }>();
  let longest: SlowlogEntry | undefined;
  for (const entry of entries) {
    const times = byCommand.get(entry.command);
    if (times) times.micros.push(entry.micros);
    else byCommand.set(entry.command, { script: entry.script, micros: [entry.micros] });
    if (!longest || entry.micros > longest.micros) longest = entry;
  }
  const times = [...byCommand].map(([command, { script, micros }]): CommandTimes => {
    micros.sort((a, b) => a - b);
    return {
      command,
      script,
      count: micros.length,
      p50Micros: quantile(micros, 0.5),
      p99Micros: quantile(micros, 0.99),
      maxMicros: micros.at(-1) ?? Number.NaN,
    };
  });
  times.sort((a, b) => b.maxMicros - a.maxMicros);
  return { entries: entries.length, longest, byCommand: times };
}
