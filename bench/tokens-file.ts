import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The tokens file of the "auth + rate limit" variant, and the tokens its callers send. */
export interface BenchTokensFile {
  /** What AUTH_TOKENS_FILE names. */
  readonly path: string;
  /** How many callers' lines it holds. */
  readonly lines: number;
  /** The load client's token: the `bench` caller, scope write, RATE_LIMIT's rate. */
  readonly token: string;
  /**
   * The token of `bench-limited`, a read caller whose own rate (1/h) lets
   * one call through and refuses the next: the check that the rate limit
   * policy runs in the process under test.
   */
  readonly limitedToken: string;
  /** Deletes the file and its directory. */
  stop(): Promise<void>;
}

/**
 * A throwaway secret in RFC 6750's token alphabet (base64url), made at run
 * time so no token of the benchmark is ever in the repository or a log.
 */
function newToken(): string {
  return randomBytes(32).toString("base64url");
}

function sha256Line(): string {
  return `sha256:${createHash("sha256").update(newToken(), "utf8").digest("hex")}`;
}

/**
 * Writes a tokens file as a deployment might have one: ten lines, plain
 * tokens and sha256: digests, a name with two lines (a rotation under
 * way), callers with rates of their own, and the benchmark's caller among
 * them. Every call hashes its token once and compares the digest with every
 * line's (auth-policy.ts), so the number of lines is part of what is
 * measured. Mode 600, so the server does not warn about plain tokens others
 * could read; in a private temporary directory, removed by stop().
 */
export function writeBenchTokensFile(): BenchTokensFile {
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-bench-"));
  const path = join(dir, "tokens");
  const token = newToken();
  const limitedToken = newToken();
  const lines = [
    `api            write  ${newToken()}`,
    `api            write  ${sha256Line()}`,
    `dashboard      read   ${sha256Line()}`,
    `billing        write  ${newToken()}`,
    `support-tool   read   ${newToken()}  50/s`,
    `ops            admin  ${newToken()}`,
    `batch-cleanup  admin  ${newToken()}  10/s,burst=20`,
    `mobile-bff     write  ${newToken()}`,
    `bench          write  ${token}`,
    `bench-limited  read   ${limitedToken}  1/h`,
  ];
  const text = [
    "# The callers of the benchmark's auth + rate limit variant (bench/tokens-file.ts).",
    ...lines,
  ].join("\n");
  writeFileSync(path, `${text}\n`, { mode: 0o600 });
  return {
    path,
    lines: lines.length,
    token,
    limitedToken,
    stop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}
