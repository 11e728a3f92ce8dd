import { create, fromBinary, fromJsonString, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { GetResponseSchema } from "../../gen/sessionstore/v1/session_store_pb.js";
import { explainUndecodable } from "../../src/service/session-store-service.js";
import { checkPayloadDepth, MAX_PAYLOAD_DEPTH } from "../../src/service/validate.js";
import { nestedLists, nestedObjects } from "../support/deep-payload.js";

const FIELD = "session.extra_payload";

function depthError(check: () => void): ConnectError | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    return error as ConnectError;
  }
}

describe("checkPayloadDepth", () => {
  for (const [shape, build] of Object.entries({ objects: nestedObjects, lists: nestedLists })) {
    it(`accepts nested ${shape} up to MAX_PAYLOAD_DEPTH levels and rejects one more`, () => {
      for (let depth = 1; depth <= MAX_PAYLOAD_DEPTH; depth++) {
        expect(
          depthError(() => checkPayloadDepth(FIELD, build(depth))),
          `${depth}`,
        ).toBe(undefined);
      }
      for (const depth of [MAX_PAYLOAD_DEPTH + 1, MAX_PAYLOAD_DEPTH + 2, 10_000]) {
        const error = depthError(() => checkPayloadDepth(FIELD, build(depth)));
        expect(error?.code).toBe(Code.InvalidArgument);
        expect(error?.rawMessage).toBe(
          `${FIELD} must nest at most ${MAX_PAYLOAD_DEPTH} levels deep`,
        );
      }
    });
  }

  it("finds the deep branch among wide shallow ones", () => {
    const wide = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, [i, { i }]]));
    expect(depthError(() => checkPayloadDepth(FIELD, wide))).toBe(undefined);
    const error = depthError(() =>
      checkPayloadDepth(FIELD, { ...wide, deep: nestedObjects(MAX_PAYLOAD_DEPTH) }),
    );
    expect(error?.code).toBe(Code.InvalidArgument);
  });
});

/** The first depth (in the server's levels) at which `decode` fails a GetResponse carrying the payload. */
function firstFailingDepth(decode: (depth: number) => void): number {
  for (let depth = 1; depth < 1000; depth++) {
    try {
      decode(depth);
    } catch {
      return depth;
    }
  }
  return Number.POSITIVE_INFINITY;
}

describe("protobuf-es decoding a response with a deep extra_payload", () => {
  const response = (depth: number) =>
    create(GetResponseSchema, {
      session: { id: "s", userId: "u", extraPayload: nestedObjects(depth) },
    });

  it("binary fails at 99 levels and JSON far deeper: MAX_PAYLOAD_DEPTH leaves a margin", () => {
    // Figures for docs/reliability.md; Python's C++ decoder fails at 67
    // (python-client.test.ts reads MAX_PAYLOAD_DEPTH back).
    const binary = firstFailingDepth((depth) =>
      fromBinary(GetResponseSchema, toBinary(GetResponseSchema, response(depth))),
    );
    const json = firstFailingDepth((depth) =>
      fromJsonString(GetResponseSchema, toJsonString(GetResponseSchema, response(depth))),
    );
    expect(binary).toBe(99);
    expect(json).toBeGreaterThan(binary);
    expect(MAX_PAYLOAD_DEPTH * 2).toBeLessThan(binary);
  });

  it("a request failing the decoder's limit inside extra_payload is answered as too deep", () => {
    const message =
      "cannot decode message google.protobuf.Value from binary: maximum recursion depth of 100 reached";
    expect(explainUndecodable("sessionstore.v1.UpsertRequest", message)?.rawMessage).toBe(
      `${FIELD} must nest at most ${MAX_PAYLOAD_DEPTH} levels deep`,
    );
    // Other requests have no Struct; other failures keep the generic answer.
    expect(explainUndecodable("sessionstore.v1.GetRequest", message)).toBe(undefined);
    expect(
      explainUndecodable("sessionstore.v1.UpsertRequest", "maximum recursion depth reached"),
    ).toBe(undefined);
  });
});
