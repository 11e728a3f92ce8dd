// @sessionstore/client as an SDK user gets it: `npm pack`, installed into an
// empty project, type-checked against and run against a live server, its
// sessionstore-ctl bin too (test/process/ctl.test.ts tests the command). The
// install is offline, as `npm test` must be: every package comes as a
// tarball packed from this workspace's node_modules, npm runs --offline on a
// fresh empty cache, and its registry is a closed loopback port, so a
// missing package fails the install (ENOTCACHED) instead of being fetched.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectScenarioPassed,
  scenarioArgs,
  startScenarioServer,
} from "../support/client-scenario.js";
import { createTestPki, type TestPki } from "../support/pki.js";
import { runCommand } from "../support/run-command.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLIENT = join(ROOT, "clients/typescript");
/** The shared client scenario in TypeScript, compiled in the user's project. */
const SCENARIO = join(CLIENT, "examples/scenario.ts");
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");
/** The server's own dependencies: none may reach an SDK user. */
const SERVER_ONLY = ["ioredis", "pino", "prom-client"];

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/** One entry of `npm pack --json`. */
interface Packed {
  name: string;
  filename: string;
  files: { path: string }[];
}

/** A node of `npm ls --all --json`. */
interface LsNode {
  version?: string;
  dependencies?: Record<string, LsNode>;
  problems?: string[];
}

const readManifest = async (dir: string): Promise<Manifest> =>
  JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as Manifest;

/** Where Node would find package `name` from `fromDir`: the nearest node_modules holding it. */
function installedDir(name: string, fromDir: string): string {
  for (let dir = fromDir; ; dir = join(dir, "..")) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dir === join(dir, "..")) throw new Error(`${name} is not installed above ${fromDir}`);
  }
}

/**
 * The installed directories of the client's dependencies and of theirs,
 * required peers included (npm installs those too), by package name.
 */
async function dependencyClosure(
  manifest: Manifest,
  fromDir: string,
): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const visit = async (pkg: Manifest, dir: string) => {
    const optional = pkg.peerDependenciesMeta ?? {};
    const names = [
      ...Object.keys(pkg.dependencies ?? {}),
      ...Object.keys(pkg.peerDependencies ?? {}).filter((name) => !optional[name]?.optional),
    ];
    for (const name of names) {
      if (found.has(name)) continue;
      const depDir = installedDir(name, dir);
      found.set(name, depDir);
      await visit(await readManifest(depDir), depDir);
    }
  };
  await visit(manifest, fromDir);
  return found;
}

/** Every package name in an `npm ls` tree, at any depth. */
function namesIn(node: LsNode): string[] {
  return Object.entries(node.dependencies ?? {}).flatMap(([name, child]) => [
    name,
    ...namesIn(child),
  ]);
}

// The user's program, compiled with the strict options this repository uses
// and with the package's declarations checked too (skipLibCheck off). It
// upserts a session, reads it back and prints what it read.
const ROUND_TRIP = `
import type { SessionStoreClient } from "@sessionstore/client";
import { TokenTransport } from "@sessionstore/client";

export async function roundTrip(client: SessionStoreClient, id: string): Promise<string> {
  await client.upsert({
    session: { id, userId: "u1", refreshTokenId: "rt1", tokenSignatureTransport: TokenTransport.BEARER },
    ttl: { seconds: 60n },
    expectedVersion: 0n,
  });
  const { session } = await client.get({ sessionId: id, userId: "u1" }, { timeoutMs: 5000 });
  return JSON.stringify({
    id: session?.id,
    refreshTokenId: session?.refreshTokenId,
    transport: session?.tokenSignatureTransport === TokenTransport.BEARER ? "bearer" : "other",
    version: String(session?.version),
  });
}
`;

// The token and CA come straight from the environment, possibly undefined,
// which the options' types accept under exactOptionalPropertyTypes.
const NODE_PROGRAM = `
import { readFileSync } from "node:fs";
import { createSessionStoreClient, type SessionStoreClientOptions, type SessionStoreProtocol } from "@sessionstore/client";
import { roundTrip } from "./round-trip.js";

const [baseUrl = "", protocol = "grpc", id = ""] = process.argv.slice(2);
const caFile = process.env.SESSIONSTORE_CA_FILE;
const options: SessionStoreClientOptions = {
  baseUrl,
  protocol: protocol as SessionStoreProtocol,
  token: process.env.SESSIONSTORE_TOKEN,
  tls: { ca: caFile === undefined ? undefined : readFileSync(caFile) },
};
console.log(await roundTrip(createSessionStoreClient(options), id));
`;

const WEB_PROGRAM = `
import { createSessionStoreClient, type SessionStoreProtocol } from "@sessionstore/client/web";
import { roundTrip } from "./round-trip.js";

// The browser entry's types offer only what browsers can speak.
// @ts-expect-error "grpc" is not a browser protocol
export const notForBrowsers: SessionStoreProtocol = "grpc";

const [baseUrl = "", protocol = "grpc-web", id = ""] = process.argv.slice(2);
console.log(await roundTrip(createSessionStoreClient({ baseUrl, protocol: protocol as SessionStoreProtocol }), id));
`;

const TSCONFIG = {
  compilerOptions: {
    target: "es2023",
    // dom: the browser entry's declarations name fetch's types.
    lib: ["es2023", "dom"],
    module: "nodenext",
    moduleResolution: "nodenext",
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    verbatimModuleSyntax: true,
    skipLibCheck: false,
    // Node's types from this repository: a Node user has their own, and
    // installing them here would add a package the client does not declare.
    typeRoots: [join(ROOT, "node_modules/@types")],
    types: ["node"],
    outDir: "out",
  },
  include: ["*.ts"],
};

describe("the @sessionstore/client package, packed and installed like a user would", () => {
  let temp = "";
  let project = "";
  let manifest: Manifest;
  let packedClient: Packed;
  let installLog = "";
  let server: ServerProcess | undefined;
  let baseUrl = "";
  let pki: TestPki | undefined;
  let caFile = "";
  let tlsServer: ServerProcess | undefined;
  let tlsBaseUrl = "";
  const writerToken = randomBytes(24).toString("base64url");

  /**
   * npm with nothing of this machine's or the calling npm's settings (`npm
   * test` exports npm_config_local_prefix, which would point an install at
   * this repository): HOME, config files and cache all in the temp dir.
   */
  const npm = async (args: string[], cwd: string) => {
    const env = {
      PATH: process.env.PATH ?? "",
      HOME: temp,
      npm_config_userconfig: join(temp, "npmrc"),
      npm_config_globalconfig: join(temp, "global-npmrc"),
      npm_config_cache: join(temp, "npm-cache"),
      npm_config_offline: "true",
      // A closed port: were --offline ever ignored, a fetch would fail here
      // rather than reach a registry.
      npm_config_registry: "http://127.0.0.1:9/",
      npm_config_audit: "false",
      npm_config_fund: "false",
      npm_config_update_notifier: "false",
    };
    return run("npm", args, { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
  };

  /** Runs a compiled program of the user project with this test's Node. */
  const runProgram = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, args, {
      cwd: project,
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 15_000,
    });

  beforeAll(async () => {
    temp = await mkdtemp(join(tmpdir(), "sessionstore-client-package-"));
    const tarballs = join(temp, "tarballs");
    project = join(temp, "project");
    await Promise.all([mkdir(tarballs), mkdir(project)]);
    await Promise.all([
      writeFile(join(temp, "npmrc"), ""),
      writeFile(join(temp, "global-npmrc"), ""),
    ]);
    server = runServer({ PORT: "0", HOST: "127.0.0.1" });
    // And one that serves TLS and asks for a token, for the token and tls options.
    pki = createTestPki();
    const ca = pki.ca("ca");
    caFile = ca.certFile;
    const serverCert = ca.issue("server", { san: ["IP:127.0.0.1"], usage: "server" });
    const tokensFile = join(temp, "tokens");
    await writeFile(tokensFile, `writer write ${writerToken}\n`);
    tlsServer = runServer({
      PORT: "0",
      HOST: "127.0.0.1",
      TLS_CERT_FILE: serverCert.certFile,
      TLS_KEY_FILE: serverCert.keyFile,
      AUTH_TOKENS_FILE: tokensFile,
    });

    // The client as published: `npm pack` runs its prepack build. Then its
    // dependencies, from the copies this workspace installed (their own
    // lifecycle scripts would need their build tools, so none run).
    manifest = await readManifest(CLIENT);
    const pack = async (args: string[], cwd: string) =>
      JSON.parse(
        (await npm(["pack", "--json", "--pack-destination", tarballs, ...args], cwd)).stdout,
      ) as Packed[];
    const [client] = await pack([], CLIENT);
    if (!client) throw new Error("npm pack made no tarball of the client");
    packedClient = client;
    const closure = await dependencyClosure(manifest, CLIENT);
    const dependencies = await pack(["--ignore-scripts", ...closure.values()], tarballs);

    // The project depends on the client alone; `overrides` makes npm take
    // each dependency from its tarball wherever the tree needs it.
    const tarball = (packed: Packed) => `file:${join(tarballs, packed.filename)}`;
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({
        name: "sessionstore-client-user",
        version: "1.0.0",
        private: true,
        type: "module",
        dependencies: { [client.name]: tarball(client) },
        overrides: Object.fromEntries(dependencies.map((packed) => [packed.name, tarball(packed)])),
      }),
    );
    const install = await npm(["install", "--loglevel=http"], project);
    installLog = install.stdout + install.stderr;

    await Promise.all([
      writeFile(join(project, "round-trip.ts"), ROUND_TRIP),
      writeFile(join(project, "node-user.ts"), NODE_PROGRAM),
      writeFile(join(project, "web-user.ts"), WEB_PROGRAM),
      writeFile(join(project, "tsconfig.json"), JSON.stringify(TSCONFIG)),
      writeFile(join(project, "scenario.ts"), await readFile(SCENARIO)),
    ]);
    await run(process.execPath, [TSC, "-p", "tsconfig.json"], {
      cwd: project,
      timeout: 60_000,
    }).catch((error: { stdout?: string }) => {
      throw new Error(`tsc failed on the user's program:\n${error.stdout ?? error}`);
    });
    baseUrl = `http://127.0.0.1:${await server.port()}`;
    tlsBaseUrl = `https://127.0.0.1:${await tlsServer.port()}`;
  }, 180_000);

  afterAll(async () => {
    server?.kill();
    tlsServer?.kill();
    await server?.exited;
    await tlsServer?.exited;
    pki?.remove();
    if (temp) await rm(temp, { recursive: true, force: true });
  });

  it("ships its build, declarations and sources, nothing else", () => {
    const paths = packedClient.files.map((file) => file.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "dist/index.js",
        "dist/index.d.ts",
        "dist/web.js",
        "dist/web.d.ts",
        "dist/cli/main.js",
      ]),
    );
    expect(
      paths.filter((path) => !/^(dist|src)\/|^package\.json$|^README\.md$/.test(path)),
    ).toEqual([]);
  });

  it("installs offline with exactly its declared dependencies, none of the server's", async () => {
    expect(installLog, "npm fetched from a registry").not.toMatch(/\bhttp fetch\b/);
    const { stdout } = await npm(["ls", "--all", "--json"], project);
    const tree = JSON.parse(stdout) as LsNode;
    expect(tree.problems, "npm ls problems").toBeUndefined();
    expect(Object.keys(tree.dependencies ?? {})).toEqual([manifest.name]);
    const installed = tree.dependencies?.[manifest.name] ?? {};
    expect(installed.version).toBe(manifest.version);
    expect(Object.keys(installed.dependencies ?? {}).sort()).toEqual(
      Object.keys(manifest.dependencies ?? {}).sort(),
    );
    const everything = new Set(namesIn(tree));
    expect(SERVER_ONLY.filter((name) => everything.has(name))).toEqual([]);
    expect([...everything].sort()).toEqual(
      [manifest.name, ...(await dependencyClosure(manifest, CLIENT)).keys()].sort(),
    );
  });

  it.each(["grpc", "connect"])(
    "runs a Node program over %s against a live server",
    async (protocol) => {
      const { stdout } = await runProgram([
        "out/node-user.js",
        baseUrl,
        protocol,
        `node-${protocol}`,
      ]);
      expect(JSON.parse(stdout)).toEqual({
        id: `node-${protocol}`,
        refreshTokenId: "rt1",
        transport: "bearer",
        version: "1",
      });
    },
  );

  it.each(["grpc", "connect"])(
    "runs a Node program over %s with TLS and a token against a live server",
    async (protocol) => {
      const id = `node-tls-${protocol}`;
      const args = ["out/node-user.js", tlsBaseUrl, protocol, id];
      const env = { SESSIONSTORE_CA_FILE: caFile, SESSIONSTORE_TOKEN: writerToken };
      const { stdout } = await runProgram(args, env);
      expect(JSON.parse(stdout)).toMatchObject({ id, version: "1" });
      // The token is what let it in, the CA what let it connect.
      await expect(runProgram(args, { SESSIONSTORE_CA_FILE: caFile })).rejects.toMatchObject({
        stderr: expect.stringContaining("missing credentials"),
      });
      await expect(runProgram(args, { SESSIONSTORE_TOKEN: writerToken })).rejects.toMatchObject({
        stderr: expect.stringContaining("unable to verify the first certificate"),
      });
    },
  );

  it("runs the shared client scenario over TLS with a token against a live server", async () => {
    // The same steps and output as the Python package's and the Go module's.
    const scenarioPki = createTestPki();
    const scenarioServer = await startScenarioServer(scenarioPki, "typescript");
    try {
      const scenario = await runCommand(
        process.execPath,
        ["out/scenario.js", ...scenarioArgs(scenarioServer)],
        { cwd: project, env: { PATH: process.env.PATH ?? "" } },
      );
      expectScenarioPassed(scenario, scenarioServer.token);
    } finally {
      scenarioServer.server.kill();
      scenarioPki.remove();
    }
  });

  it("installs sessionstore-ctl as a bin that runs against a live server", async () => {
    // npm links the bin and makes it executable; run through its #! line.
    const ctl = join(project, "node_modules/.bin/sessionstore-ctl");
    const ctlEnv = { PATH: process.env.PATH ?? "" };
    const help = await run(ctl, ["--help"], { env: ctlEnv, timeout: 15_000 });
    expect(help.stdout).toContain("Usage: sessionstore-ctl <command>");
    const health = await run(ctl, ["health", "--target", baseUrl], {
      env: ctlEnv,
      timeout: 15_000,
    });
    expect(health.stdout).toBe("SERVING\n");
    // And with TLS and the token from the environment, as an operator runs it.
    const tlsEnv = {
      ...ctlEnv,
      SESSIONSTORE_TARGET: tlsBaseUrl,
      SESSIONSTORE_CA_FILE: caFile,
      SESSIONSTORE_TOKEN: writerToken,
    };
    await runProgram(["out/node-user.js", tlsBaseUrl, "grpc", "ctl-get"], {
      SESSIONSTORE_CA_FILE: caFile,
      SESSIONSTORE_TOKEN: writerToken,
    });
    const get = await run(ctl, ["get", "u1", "ctl-get", "--json"], {
      env: tlsEnv,
      timeout: 15_000,
    });
    expect(JSON.parse(get.stdout)).toMatchObject({ session: { id: "ctl-get", version: "1" } });
  });

  it("runs the browser entry (fetch) from /web and by the `browser` condition", async () => {
    const web = await runProgram(["out/web-user.js", baseUrl, "connect", "web-connect"]);
    expect(JSON.parse(web.stdout)).toMatchObject({ id: "web-connect", version: "1" });
    // The same Node program, resolved as a bundler for browsers would.
    const browser = await runProgram([
      "--conditions=browser",
      "out/node-user.js",
      baseUrl,
      "grpc-web",
      "browser-grpc-web",
    ]);
    expect(JSON.parse(browser.stdout)).toMatchObject({ id: "browser-grpc-web", version: "1" });
    // Which is the browser entry: it refuses plain gRPC, which the Node entry speaks.
    await expect(
      runProgram(["--conditions=browser", "out/node-user.js", baseUrl, "grpc", "browser-grpc"]),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('protocol "grpc" is not available in browsers'),
    });
  });
});
