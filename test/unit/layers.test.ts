import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** Every .ts file below `dir`, relative to the repository root. */
function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => join(dir, file));
}

/** The repository files a source file imports (relative imports only), relative to the root. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((match) =>
    relative(ROOT, resolve(ROOT, dirname(file), (match[1] as string).replace(/\.js$/, ".ts"))),
  );
}

/** Which files under `dir` import something matching `target`, and what. */
function offenders(dir: string, target: RegExp, allowed: RegExp = /^$/): string[] {
  return sources(dir)
    .filter((file) => !allowed.test(file))
    .flatMap((file) =>
      importsOf(file)
        .filter((imported) => target.test(imported))
        .map((imported) => `${file} imports ${imported}`),
    );
}

describe("the layers of src/", () => {
  it("only the service layer imports the generated SessionStore API", () => {
    expect(offenders("src", /^gen\/sessionstore\//, /^src\/service\//)).toEqual([]);
  });

  it("the health and reflection services import only their own generated code", () => {
    expect(
      offenders("src", /^gen\/health\//, /^src\/(grpc\/health|bin\/healthcheck)\.ts$/),
    ).toEqual([]);
    expect(offenders("src", /^gen\/grpc\/reflection\//, /^src\/grpc\/reflection\.ts$/)).toEqual([]);
  });

  it("data flows one way: transport, pipeline, service, store", () => {
    // The store knows no layer above it, and no generated code.
    expect(offenders("src/store", /^(gen|src\/(service|pipeline|transport|grpc|server))/)).toEqual(
      [],
    );
    // The service knows the store, not how calls arrive.
    expect(offenders("src/service", /^src\/(pipeline|transport|grpc|server)/)).toEqual([]);
    // Policies know calls, not services or stores.
    expect(offenders("src/pipeline", /^(gen|src\/(service|store|transport|grpc|server))/)).toEqual(
      [],
    );
    // Transports run the pipeline over whatever routes they are given.
    expect(offenders("src/transport", /^(gen|src\/(service|store|grpc|server))/)).toEqual([]);
  });

  it("nothing imports an entry point", () => {
    expect(offenders("src", /^src\/bin\//)).toEqual([]);
    expect(offenders("bench", /^src\/bin\//)).toEqual([]);
    expect(offenders("test", /^src\/bin\//)).toEqual([]);
  });

  it("the benchmark does not import the tests' code", () => {
    expect(offenders("bench", /^test\//)).toEqual([]);
  });
});
