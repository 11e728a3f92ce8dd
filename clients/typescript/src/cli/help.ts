/** sessionstore-ctl's help texts, rendered from the command and option tables. */
import {
  COMMANDS,
  type CommandSpec,
  GLOBAL_OPTIONS,
  type OptionSpec,
  type UsageError,
} from "./command-line.js";

const NAME = "sessionstore-ctl";

function synopsis(command: CommandSpec): string {
  const options = Object.entries(command.options).map(([name, spec]) => {
    const flag = `--${name}${spec.value ? ` ${spec.value}` : ""}`;
    if (spec.required) return flag;
    return spec.multiple ? `[${flag}]...` : `[${flag}]`;
  });
  return [command.name, ...command.args, ...options].join(" ");
}

/**
 * Options as aligned lines: the flag and what it does, then its
 * environment variable on a line of its own, so lines fit 80 columns.
 */
function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const flags = Object.entries(options).map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : "";
    return [`${short}--${name}${spec.value ? ` ${spec.value}` : ""}`, spec] as const;
  });
  const width = Math.max(...flags.map(([flag]) => flag.length));
  return flags.flatMap(([flag, spec]) => [
    `  ${flag.padEnd(width)}  ${spec.description}`,
    ...(spec.env ? [`  ${"".padEnd(width)}  (env ${spec.env})`] : []),
  ]);
}

const FOOTER = [
  "Durations: 500ms, 90s, 15m, 1h30m, 7d. The target is required. An argument",
  "that starts with '-' goes after '--'.",
  "",
  "Exit codes: 0 ok, 1 any other failure, 2 usage or configuration error",
  "(nothing was called), 3 not found, 4 unauthenticated or permission denied,",
  "5 unavailable or deadline exceeded (health: not SERVING).",
];

/** What every help ends with: the options every command takes, then the footer. */
const COMMON_TAIL = [
  "",
  "Options of every command (an option wins over its environment variable):",
  ...optionLines(GLOBAL_OPTIONS),
  "",
  ...FOOTER,
];

/** The help of the whole tool. */
export function mainHelp(): string {
  return [
    `${NAME}: inspect and revoke a SessionStore server's login sessions.`,
    "",
    `Usage: ${NAME} <command> [arguments] [options]`,
    `       ${NAME} <command> --help`,
    "",
    "Commands:",
    ...COMMANDS.flatMap((command) => [`  ${synopsis(command)}`, `      ${command.summary}`]),
    ...COMMON_TAIL,
  ].join("\n");
}

/** The help of one command. */
export function commandHelp(command: CommandSpec): string {
  const own = Object.keys(command.options).length > 0;
  return [
    `Usage: ${NAME} ${synopsis(command)} [options]`,
    "",
    command.summary,
    ...command.details,
    ...(own ? ["", "Options:", ...optionLines(command.options)] : []),
    ...COMMON_TAIL,
  ].join("\n");
}

/** A usage error as printed: what is wrong, and which help to read. */
export function usageMessage(error: UsageError): string {
  const help = error.command ? `${NAME} ${error.command} --help` : `${NAME} --help`;
  return `${NAME}: ${error.message}\nSee ${help}.`;
}
