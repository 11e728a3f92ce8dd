// Reads the Dockerfile and .dockerignore as Docker does, for the forms this
// repository uses. No Docker engine runs here, so test/dockerfile.test.ts
// checks the image's policy from what this reads, and CI
// (.ci/emulate-dockerfile.ts) runs the steps it reads. Anything it does not
// understand fails loudly: it is extended together with the Dockerfile,
// rather than a new step being silently skipped.

/** ENTRYPOINT, CMD: exec form (a JSON array) or shell form (run by /bin/sh -c). */
export type Command = { form: "exec"; argv: string[] } | { form: "shell"; text: string };

/** COPY from the build context, or `--from` an earlier stage. */
export interface CopyStep {
  kind: "copy";
  sources: string[];
  destination: string;
  from: string | undefined;
}

/** RUN, with the stage's ENV as it stands there (a later ENV does not apply). */
export interface RunStep {
  kind: "run";
  command: string;
  env: Record<string, string>;
}

/** One FROM and what follows it; COPY and RUN in file order. */
export interface Stage {
  image: string;
  name: string | undefined;
  env: Record<string, string>;
  workdir: string | undefined;
  steps: (CopyStep | RunStep)[];
  user: string | undefined;
  expose: string[];
  healthcheck: { options: Record<string, string>; command: Command } | undefined;
  entrypoint: Command | undefined;
}

/** Instructions with continuation lines joined; Docker drops comment lines even inside one. */
function instructions(text: string): string[] {
  const found: string[] = [];
  let pending = "";
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const continued = line.endsWith("\\");
    pending += continued ? `${line.slice(0, -1)} ` : line;
    if (!continued) {
      found.push(pending);
      pending = "";
    }
  }
  if (pending !== "") throw new Error("Dockerfile: ends in a line continuation");
  return found;
}

/** Docker takes the exec form only for a JSON array of strings. */
function parseCommand(text: string): Command {
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string")) {
      return { form: "exec", argv: value };
    }
  } catch {
    // Not JSON: the shell form.
  }
  return { form: "shell", text };
}

/** The stages of a Dockerfile; the last one is the image that ships. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  for (const instruction of instructions(text)) {
    const fail = (): never => {
      throw new Error(`Dockerfile: not understood by .ci/dockerfile.ts: ${instruction}`);
    };
    const [, word = "", rest = ""] = /^(\S+)\s*(.*)$/s.exec(instruction) ?? [];
    const words = rest.split(/\s+/).filter(Boolean);
    const keyword = word.toUpperCase();
    if (keyword === "FROM") {
      const [image, as, name, ...extra] = words;
      if (image === undefined || image.startsWith("--") || extra.length > 0) fail();
      if (as !== undefined && (as.toUpperCase() !== "AS" || name === undefined)) fail();
      stages.push({
        image: image ?? "",
        name: name?.toLowerCase(),
        env: {},
        workdir: undefined,
        steps: [],
        user: undefined,
        expose: [],
        healthcheck: undefined,
        entrypoint: undefined,
      });
      continue;
    }
    const stage = stages.at(-1) ?? fail();
    switch (keyword) {
      case "ENV":
        // No quotes or $variables: the emulation would not expand them as Docker does.
        for (const pair of words) {
          const [, name = fail(), value = fail()] = /^(\w+)=([^"'$\\]*)$/.exec(pair) ?? [];
          stage.env[name] = value;
        }
        break;
      case "WORKDIR":
        // One per stage: the emulation stands one directory for it.
        if (words.length !== 1 || !rest.startsWith("/") || stage.workdir !== undefined) fail();
        stage.workdir = rest;
        break;
      case "COPY": {
        const from = words
          .filter((w) => w.startsWith("--"))
          .map((flag) => /^--from=(\S+)$/.exec(flag)?.[1]?.toLowerCase() ?? fail());
        const paths = words.filter((w) => !w.startsWith("--"));
        const destination = paths.pop();
        if (destination === undefined || paths.length === 0 || from.length > 1) fail();
        if (/[*?[$]/.test(rest) || rest.startsWith("[") || stage.workdir === undefined) fail();
        if (from[0] !== undefined && !stages.some((s) => s.name === from[0])) fail();
        stage.steps.push({
          kind: "copy",
          sources: paths,
          destination: destination ?? "",
          from: from[0],
        });
        break;
      }
      case "RUN":
        if (rest.startsWith("[") || rest.startsWith("--") || stage.workdir === undefined) fail();
        stage.steps.push({ kind: "run", command: rest, env: { ...stage.env } });
        break;
      case "USER":
        if (words.length !== 1) fail();
        stage.user = rest;
        break;
      case "EXPOSE":
        stage.expose.push(...words);
        break;
      case "HEALTHCHECK": {
        const [, optionText = "", command = fail()] =
          /^((?:--\S+\s+)*)CMD\s+(.+)$/is.exec(rest) ?? [];
        const options: Record<string, string> = {};
        for (const option of optionText.split(/\s+/).filter(Boolean)) {
          const [, name = fail(), value = fail()] = /^--([a-z-]+)=(\S+)$/.exec(option) ?? [];
          options[name] = value;
        }
        stage.healthcheck = { options, command: parseCommand(command) };
        break;
      }
      case "ENTRYPOINT":
        stage.entrypoint = parseCommand(rest);
        break;
      default:
        fail();
    }
  }
  return stages;
}

/** A .dockerignore glob: `*` and `?` within a path segment, `**` across segments. */
function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] ?? "";
    if (glob.startsWith("**/", i)) {
      source += "(?:.*/)?";
      i += 2;
    } else if (glob.startsWith("**", i)) {
      source += ".*";
      i += 1;
    } else if (char === "*") {
      source += "[^/]*";
    } else if (char === "?") {
      source += "[^/]";
    } else if (char === "[" || char === "\\") {
      throw new Error(`.dockerignore ${glob}: character classes and escapes are not read here`);
    } else {
      source += char.replace(/[.+^${}()|\]]/g, "\\$&");
    }
  }
  return new RegExp(`^${source}$`);
}

/**
 * .dockerignore as Docker reads it: patterns are relative to the context
 * root (`node_modules` is only the top-level one, unlike .gitignore), `!`
 * re-includes, the last matching line wins, and an excluded directory
 * excludes everything in it.
 */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const negated = line.startsWith("!");
      const glob = (negated ? line.slice(1) : line).trim().replace(/^\/+/, "");
      return { negated, regex: globToRegExp(glob) };
    });
  return (path) => {
    const parts = path.replace(/^\.?\/+/, "").split("/");
    const selfAndParents = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const { negated, regex } of rules) {
      if (selfAndParents.some((p) => regex.test(p))) excluded = !negated;
    }
    return excluded;
  };
}
