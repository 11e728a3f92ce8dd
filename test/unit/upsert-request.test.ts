import { create, fromBinary, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  type UpsertRequest,
  UpsertRequestSchema,
} from "../../gen/sessionstore/v1/session_store_pb.js";
import { decodeUpsertRequest } from "../../src/service/upsert-request.js";
import { checkPayloadDepth, MAX_PAYLOAD_DEPTH } from "../../src/service/validate.js";
import { nestedLists, nestedObjects } from "../support/deep-payload.js";

function encodedRequest(extraPayload: JsonObject | undefined): Uint8Array {
  return toBinary(
    UpsertRequestSchema,
    create(UpsertRequestSchema, {
      session: {
        id: "s1",
        userId: "u1",
        refreshTokenId: "r1",
        createdAt: timestampFromMs(1_700_000_000_000),
        expiresAt: timestampFromMs(1_800_000_000_000),
        ...(extraPayload ? { extraPayload } : {}),
      },
      ttl: { seconds: 60n },
      expectedVersion: 7n,
    }),
  );
}

/** A length-delimited field. */
function field(number: number, value: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from([(number << 3) | 2, value.length]), value]);
}

/** A request whose session's extra_payload is `payload`, bytes as given. */
function withPayloadBytes(payload: Uint8Array): Uint8Array {
  const session = Buffer.concat([field(1, Buffer.from("s1")), field(2, Buffer.from("u1"))]);
  return field(1, Buffer.concat([session, field(9, payload)]));
}

/** What decoding `bytes` gives: the request, or the error's message. */
function outcome(decode: () => UpsertRequest): UpsertRequest | string {
  try {
    return decode();
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * decodeUpsertRequest(bytes) is fromBinary's answer, but for an
 * extra_payload it may leave out, only one the depth check accepts.
 * Returns whether it left the payload out.
 */
function expectSameAsFromBinary(bytes: Uint8Array): boolean {
  const ours = outcome(() => decodeUpsertRequest(bytes));
  const theirs = outcome(() => fromBinary(UpsertRequestSchema, bytes));
  if (typeof theirs === "string" || typeof ours === "string") {
    expect(ours).toEqual(theirs);
    return false;
  }
  const left =
    ours.session?.extraPayload === undefined && theirs.session?.extraPayload !== undefined;
  if (left) {
    expect(() => checkPayloadDepth("p", theirs.session?.extraPayload)).not.toThrow();
    if (theirs.session) theirs.session.extraPayload = undefined;
  }
  expect(ours).toEqual(theirs);
  return left;
}

describe("decodeUpsertRequest", () => {
  it("leaves out a plain payload, checked on its bytes, and decodes the rest as fromBinary does", () => {
    const payload = {
      roles: ["user", "billing"],
      locale: "en-GB",
      name: "Zoë 😀",
      device: { os: "iOS", trusted: true, seen: null, version: 3.25 },
      empty: {},
      none: [],
    };
    expect(expectSameAsFromBinary(encodedRequest(payload))).toBe(true);
    expect(expectSameAsFromBinary(encodedRequest({}))).toBe(true);
    expect(expectSameAsFromBinary(encodedRequest(undefined))).toBe(false);
    expect(decodeUpsertRequest(encodedRequest(payload)).session?.extraPayload).toBe(undefined);
  });

  for (const [shape, build] of Object.entries({ objects: nestedObjects, lists: nestedLists })) {
    it(`leaves out nested ${shape} up to MAX_PAYLOAD_DEPTH, and decodes deeper ones whole for the depth check`, () => {
      for (let depth = 2; depth <= MAX_PAYLOAD_DEPTH; depth++) {
        expect(expectSameAsFromBinary(encodedRequest(build(depth))), `${depth}`).toBe(true);
      }
      for (const depth of [MAX_PAYLOAD_DEPTH + 1, MAX_PAYLOAD_DEPTH + 2, 99, 200]) {
        expect(expectSameAsFromBinary(encodedRequest(build(depth))), `${depth}`).toBe(false);
      }
      const tooDeep = decodeUpsertRequest(encodedRequest(build(MAX_PAYLOAD_DEPTH + 1)));
      expect(() => checkPayloadDepth("p", tooDeep.session?.extraPayload)).toThrow(/levels deep/);
    });
  }

  it("answers as fromBinary does for payload bytes it does not take for plain", () => {
    const key = field(1, Buffer.from("k"));
    const entry = (value: Uint8Array) => field(1, Buffer.concat([key, field(2, value)]));
    const cases: Record<string, Uint8Array> = {
      "invalid UTF-8 in a key": field(
        1,
        Buffer.concat([field(1, Buffer.from([0xc3, 0x28])), field(2, Buffer.from([0x08, 0]))]),
      ),
      "invalid UTF-8 in a string": entry(field(3, Buffer.from([0xed, 0xa0, 0x80]))),
      "a Value with no kind": entry(Buffer.alloc(0)),
      "a Value with two kinds": entry(Buffer.from([0x08, 0, 0x20, 1])),
      "a null_value of 3": entry(Buffer.from([0x08, 3])),
      "a bool_value of 2": entry(Buffer.from([0x20, 2])),
      "a map entry with no value": field(1, key),
      "a map entry with its value first": field(
        1,
        Buffer.concat([field(2, Buffer.from([0x08, 0])), key]),
      ),
      "an unknown field in a Struct": Buffer.concat([
        entry(Buffer.from([0x08, 0])),
        Buffer.from([0x18, 1]),
      ]),
      "a number_value cut short": entry(Buffer.from([0x11, 0, 0, 0])),
      "a length past the Struct": Buffer.from([0x0a, 0x7f, 0x0a]),
      "a varint that never ends": Buffer.from([0x0a, 0xff, 0xff, 0xff]),
      "a group": Buffer.from([0x0b, 0x0c]),
    };
    for (const [name, payload] of Object.entries(cases)) {
      expect(expectSameAsFromBinary(withPayloadBytes(payload)), name).toBe(false);
    }
  });

  it("decodes whole a request with its session or its payload twice, which decoders merge", () => {
    const payload = field(
      1,
      Buffer.concat([field(1, Buffer.from("k")), field(2, Buffer.from([0x20, 1]))]),
    );
    const one = withPayloadBytes(payload);
    expect(expectSameAsFromBinary(Buffer.concat([one, one]))).toBe(false);
    const session = Buffer.concat([
      field(1, Buffer.from("s1")),
      field(9, payload),
      field(9, payload),
    ]);
    expect(expectSameAsFromBinary(field(1, session))).toBe(false);
    expect(expectSameAsFromBinary(one)).toBe(true);
  });

  it("answers as fromBinary does for requests that do not decode", () => {
    const good = encodedRequest({ a: 1 });
    for (const bytes of [
      good.subarray(0, good.length - 1),
      Buffer.concat([good, Buffer.from([0xff])]),
      Buffer.from([0x0a, 0x02, 0x0a]),
      Buffer.from([0x08]),
    ]) {
      expectSameAsFromBinary(bytes);
      expect(typeof outcome(() => fromBinary(UpsertRequestSchema, bytes))).toBe("string");
    }
  });
});
