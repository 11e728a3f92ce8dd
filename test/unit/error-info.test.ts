import { readFileSync } from "node:fs";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_DOMAIN, REASONS, reasonOf, statusError } from "../../src/error-info.js";
import { createLogger } from "../../src/observability/logger.js";
import { toStatusError } from "../../src/transport/call-errors.js";
import { LogCapture } from "../support/test-server.js";

/** The rows of the README's error table: reason, code. */
function documentedReasons(): Map<string, string> {
  const readme = readFileSync("README.md", "utf8");
  const start = readme.indexOf("### Errors");
  const section = readme.slice(start, readme.indexOf("\n## ", start));
  const rows = new Map<string, string>();
  for (const [, reason, code] of section.matchAll(/^\| `([A-Z_]+)` +\| `([A-Z_]+)` +\|/gm)) {
    rows.set(reason as string, code as string);
  }
  return rows;
}

/** A Code as the README and gRPC name it (Code.Canceled is CANCELLED). */
function grpcName(code: Code): string {
  return code === Code.Canceled
    ? "CANCELLED"
    : (Code[code] as string).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

describe("the README's error table", () => {
  it("lists every reason with its code, and no other", () => {
    const expected = new Map(
      Object.entries(REASONS).map(([reason, code]) => [reason, grpcName(code)]),
    );
    expect(documentedReasons()).toEqual(expected);
  });

  it("names the domain", () => {
    const readme = readFileSync("README.md", "utf8");
    expect(readme).toContain(`\`domain\` is always\n\`${ERROR_DOMAIN}\``);
  });
});

describe("statusError", () => {
  it("gives the reason's code and one ErrorInfo of the domain", () => {
    const error = statusError("TTL_OUT_OF_RANGE", "ttl must be positive", { field: "ttl" });
    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toBe("ttl must be positive");
    const infos = error.findDetails(ErrorInfoSchema);
    expect(infos.map(({ reason, domain, metadata }) => ({ reason, domain, metadata }))).toEqual([
      { reason: "TTL_OUT_OF_RANGE", domain: ERROR_DOMAIN, metadata: { field: "ttl" } },
    ]);
  });
});

describe("toStatusError, the transports' last line of defence", () => {
  const capture = () => {
    const logs = new LogCapture();
    return { logs, logger: createLogger("debug", logs) };
  };

  it("sends an error that has its ErrorInfo as it is", () => {
    const { logger } = capture();
    const error = statusError("SESSION_NOT_FOUND", "session not found");
    expect(toStatusError(error, logger, "p")).toBe(error);
  });

  it("gives a library's error the reason of its code, keeping message, headers and details", () => {
    const { logs, logger } = capture();
    const raised = new ConnectError("unknown compression", Code.Unimplemented, { a: "b" }, [
      { desc: StringValueSchema, value: { value: "kept" } },
    ]);
    const sent = toStatusError(raised, logger, "p");
    expect(sent.code).toBe(Code.Unimplemented);
    expect(sent.rawMessage).toBe("unknown compression");
    expect(sent.metadata.get("a")).toBe("b");
    expect(reasonOf(sent)).toBe("UNIMPLEMENTED");
    expect(sent.findDetails(StringValueSchema).map((d) => d.value)).toEqual(["kept"]);
    expect(logs.lines).toEqual([]);
  });

  it("answers an error of a code without a generic reason, or no ConnectError, as a logged INTERNAL", () => {
    const { logs, logger } = capture();
    for (const raised of [new ConnectError("odd", Code.DataLoss), new Error("bug")]) {
      const sent = toStatusError(raised, logger, "p");
      expect(sent.code).toBe(Code.Internal);
      expect(sent.rawMessage).toBe("internal error");
      expect(reasonOf(sent)).toBe("INTERNAL");
    }
    expect(logs.lines).toHaveLength(2);
  });
});
