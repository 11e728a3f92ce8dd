/**
 * sessionstore-ctl's commands and options as data, and the parsing of a
 * command line against them (node:util parseArgs: no dependency). The help
 * texts are rendered from the same tables, so they cannot drift from what
 * is accepted.
 */
import { parseArgs } from "node:util";

/** A mistake in the command line or its environment; exit code 2, nothing was called. */
export class UsageError extends Error {
  /** The command whose help to point at, if one was recognised. */
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

/** One option: how parseArgs reads it, and what the help says about it. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's placeholder in the help, such as "<url>". */
  readonly value?: string;
  /** The environment variable read when the option is absent. */
  readonly env?: string;
  /** The command cannot run without it (the help shows it unbracketed). */
  readonly required?: boolean;
  readonly description: string;
}

/** The options of every command: where the server is, how to reach it, how to print. */
export const GLOBAL_OPTIONS = {
  target: {
    type: "string",
    value: "<url>",
    env: "SESSIONSTORE_TARGET",
    description: "the server: http://host:port, or https:// for TLS",
  },
  "token-file": {
    type: "string",
    value: "<path>",
    env: "SESSIONSTORE_TOKEN_FILE",
    description: "a file holding the bearer token (preferred)",
  },
  token: {
    type: "string",
    value: "<token>",
    env: "SESSIONSTORE_TOKEN",
    description: "the bearer token itself (others can read it in ps)",
  },
  ca: {
    type: "string",
    value: "<path>",
    env: "SESSIONSTORE_CA_FILE",
    description: "CA certificate(s) to verify https:// with (PEM)",
  },
  cert: {
    type: "string",
    value: "<path>",
    env: "SESSIONSTORE_CERT_FILE",
    description: "client certificate for mutual TLS (PEM, with --key)",
  },
  key: {
    type: "string",
    value: "<path>",
    env: "SESSIONSTORE_KEY_FILE",
    description: "private key of --cert (PEM)",
  },
  protocol: {
    type: "string",
    value: "<name>",
    env: "SESSIONSTORE_PROTOCOL",
    description: "grpc (default), grpc-web or connect",
  },
  timeout: {
    type: "string",
    value: "<duration>",
    env: "SESSIONSTORE_TIMEOUT",
    description: "deadline of each call (default 10s)",
  },
  json: {
    type: "boolean",
    description: "print JSON for scripts (errors too, on stderr)",
  },
  help: { type: "boolean", short: "h", description: "show this help" },
} as const satisfies Record<string, OptionSpec>;

/** One command: its arguments, its own options and its help. */
export interface CommandSpec {
  readonly name: string;
  /** Positional arguments; a name in brackets is optional. */
  readonly args: readonly string[];
  readonly summary: string;
  /** More lines of help after the summary. */
  readonly details: readonly string[];
  readonly options: Readonly<Record<string, OptionSpec>>;
}

export const COMMANDS = [
  {
    name: "get",
    args: ["<user>", "<session>"],
    summary: "Show one session.",
    details: ["Exit code 3 when the session does not exist (or has expired)."],
    options: {},
  },
  {
    name: "list",
    args: ["<user>"],
    summary: "List all of a user's live sessions (every page).",
    details: [
      "The table has each session's id, version, creation and refresh time, when",
      "the store will forget it (storage expiry) and its last IP.",
      '--json prints {"sessions": [...]}.',
    ],
    options: {
      "page-size": {
        type: "string",
        value: "<n>",
        description: "sessions per call, 1 to 1000 (default 100)",
      },
    },
  },
  {
    name: "revoke",
    args: ["<user>", "<session>"],
    summary: "Delete one session (the user is logged out of it).",
    details: ["Exit code 3 when there was no such session: nothing was revoked."],
    options: {},
  },
  {
    name: "revoke-all",
    args: ["<user>"],
    summary: "Delete all of a user's sessions but those named by --except.",
    details: ["Needs a token with the admin scope. Prints how many sessions were deleted."],
    options: {
      except: {
        type: "string",
        multiple: true,
        value: "<session>",
        description: "keep this session (repeat for more)",
      },
    },
  },
  {
    name: "touch",
    args: ["<user>", "<session>"],
    summary: "Keep a session for --ttl from now, without changing it.",
    details: ["Exit code 3 when the session does not exist."],
    options: {
      ttl: {
        type: "string",
        value: "<duration>",
        required: true,
        description: "how long to keep the session from now",
      },
    },
  },
  {
    name: "health",
    args: ["[service]"],
    summary: "Ask grpc.health.v1 whether the server (or a service) is serving.",
    details: [
      "Prints the status; exit code 0 for SERVING, 5 for anything else",
      "(NOT_SERVING: the store is unreachable or the server is shutting down),",
      "3 for an unknown service.",
    ],
    options: {},
  },
  {
    name: "watch",
    args: ["<user>"],
    summary: "Print a user's (or a session's) changes as they happen, one per line.",
    details: [
      "Runs until Ctrl-C or SIGTERM (exit code 0), reconnecting after the",
      "server's MAX_DEADLINE, restarts and dropped connections without missing an",
      "event. It first checks that the server answers (within --timeout), so a",
      "wrong target fails at once (exit 5). Each line ends with the event id:",
      "pass it to --after to resume from there. Exit code 1 with reason",
      "EVENTS_EXPIRED when the events after --after are no longer kept.",
      "--json prints one JSON object per line.",
    ],
    options: {
      session: {
        type: "string",
        value: "<session>",
        description: "watch this session only (WatchSession)",
      },
      after: {
        type: "string",
        value: "<event id>",
        description: "start after this event (default: from now on)",
      },
    },
  },
] as const satisfies readonly CommandSpec[];

export type CommandName = (typeof COMMANDS)[number]["name"];

/** What the command line asks for. */
export type CommandLine =
  | { readonly kind: "help"; readonly command: CommandSpec | undefined }
  | {
      readonly kind: "run";
      readonly command: CommandSpec & { readonly name: CommandName };
      /** The command's positional arguments. */
      readonly args: readonly string[];
      readonly values: OptionValues;
    };

/** Option values by name, as parseArgs gives them; read them with {@link stringOption} and {@link listOption}. */
export type OptionValues = Readonly<
  Record<string, string | boolean | readonly (string | boolean)[] | undefined>
>;

/** A string option's value, or undefined when absent. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

/** A repeated string option's values (none when absent). */
export function listOption(values: OptionValues, name: string): string[] {
  const value = values[name];
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

const ALL_OPTIONS: Record<string, OptionSpec> = Object.assign(
  {},
  GLOBAL_OPTIONS,
  ...COMMANDS.map((command) => command.options),
);

export function findCommand(name: string | undefined): (typeof COMMANDS)[number] | undefined {
  return COMMANDS.find((command) => command.name === name);
}

/**
 * Parses `argv` (without node and the script): the command first, then its
 * arguments and options in any order, `--` before an argument that starts
 * with a dash. `help [command]` and `--help` ask for help.
 *
 * @throws UsageError for anything it cannot take.
 */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  const parsed = parse(argv);
  const [name, ...args] = parsed.positionals;
  if (name === "help") {
    const topic = args[0];
    const command = findCommand(topic);
    if (topic !== undefined && !command) throw new UsageError(`no command "${topic}"`);
    return { kind: "help", command };
  }
  const command = findCommand(name);
  if (parsed.values.help === true) return { kind: "help", command };
  if (name === undefined) throw new UsageError("no command given");
  if (!command) throw new UsageError(`no command "${name}"`);

  for (const token of parsed.tokens) {
    if (token.kind !== "option") continue;
    if (!(token.name in GLOBAL_OPTIONS) && !(token.name in command.options)) {
      throw new UsageError(`${token.rawName} is not an option of ${command.name}`, command.name);
    }
    const spec = ALL_OPTIONS[token.name];
    if (spec && !("multiple" in spec && spec.multiple) && countOf(parsed.tokens, token.name) > 1) {
      throw new UsageError(`${token.rawName} is given more than once`, command.name);
    }
  }
  const required = command.args.filter((arg) => !arg.startsWith("["));
  if (args.length < required.length || args.length > command.args.length) {
    throw new UsageError(
      `${command.name} takes ${command.args.join(" ")}, got ${args.length} argument(s)`,
      command.name,
    );
  }
  return { kind: "run", command, args, values: parsed.values };
}

function parse(argv: readonly string[]) {
  try {
    return parseArgs({
      args: [...argv],
      options: ALL_OPTIONS,
      allowPositionals: true,
      strict: true,
      tokens: true,
    });
  } catch (error) {
    // parseArgs names the option at fault, never the value given to it.
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}

function countOf(tokens: readonly { kind: string; name?: string }[], name: string): number {
  return tokens.filter((token) => token.kind === "option" && token.name === name).length;
}
