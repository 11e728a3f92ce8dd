import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Credentials } from "../../src/pipeline/credentials.js";
import { runServer, type ServerProcess } from "../support/server-process.js";

const run = promisify(execFile);

/**
 * The `buf curl` and `curl` commands of the README's Debugging section, in
 * order, with line continuations joined: the section must stay true.
 */
function debuggingCommands(): string[] {
  const readme = readFileSync("README.md", "utf8");
  const section = readme.slice(
    readme.indexOf("## Debugging"),
    readme.indexOf("\n## ", readme.indexOf("## Debugging") + 1),
  );
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
  return blocks
    .flatMap((block) => block.replace(/\\\n\s*/g, "").split("\n"))
    .map((line) => line.trim())
    .filter((line) => line.startsWith("npx buf curl") || line.startsWith("curl "));
}

let server: ServerProcess;
let port: number;

beforeAll(async () => {
  server = runServer({ PORT: "0", HOST: "127.0.0.1" });
  port = await server.port();
});

afterAll(() => {
  server?.kill();
});

describe("the README's Debugging section", () => {
  const commands = debuggingCommands();

  it("has the commands this test runs", () => {
    expect(commands.filter((c) => c.startsWith("npx buf curl")).length).toBeGreaterThanOrEqual(5);
    expect(commands.filter((c) => c.startsWith("curl ")).length).toBeGreaterThanOrEqual(3);
  });

  it("works as written against a running server", async () => {
    const outputs: string[] = [];
    for (const command of commands) {
      const local = command.replaceAll("localhost:50051", `127.0.0.1:${port}`);
      const { stdout } = await run("bash", ["-c", local], { timeout: 30_000 });
      outputs.push(stdout);
    }
    const all = outputs.join("\n");
    expect(all).toContain("sessionstore.v1.SessionStoreService\n");
    // The mistake the section shows is answered with what is accepted.
    expect(all).toContain(
      "unsupported content-type for Get; POST with content-type application/json",
    );
    expect(all).toContain("sessionstore.v1.SessionStoreService/Upsert");
    expect(all).toContain('"status": "SERVING"');
    // The Upsert stored the session that Get and ListByUser then return.
    const lastGet = JSON.parse(outputs.at(-2) ?? "{}");
    expect(lastGet).toMatchObject({
      session: { id: "s1", userId: "u1", extraPayload: { theme: "dark" }, version: "1" },
    });
  });
});

describe("the README's production section", () => {
  const readme = readFileSync("README.md", "utf8");
  const section = readme.slice(
    readme.indexOf("## In production"),
    readme.indexOf("\n## ", readme.indexOf("## In production") + 1),
  );

  it("shows a tokens file the server accepts", () => {
    const example = /<<'TOKENS'\n([\s\S]*?)\nTOKENS\n/.exec(section)?.[1];
    expect(example).toBeDefined();
    const credentials = Credentials.parse(example ?? "");
    expect(credentials.size).toEqual({ tokens: 2, certificates: 1 });
  });

  it("makes tokens with a command whose output the tokens file accepts", async () => {
    const command = /Make a token with `([^`]+)`/.exec(section.replace(/\n\s*/g, " "))?.[1];
    expect(command).toBeDefined();
    const { stdout } = await run("bash", ["-c", command ?? "false"]);
    const token = stdout.trim();
    const credentials = Credentials.parse(`api write ${token}`);
    expect(credentials.byToken(token)?.name).toBe("api");
  });
});
