import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { type CallRecord, checkHistories, lostAcknowledgedWrites } from "./load.js";

// The fault tests' verdict rests on checkHistories: these histories show
// that it accepts what the contract allows (a failed write applied or not,
// at its place) and catches each kind of violation.

let clock = 0;

function call(
  op: CallRecord["op"],
  outcome: Code | "ok",
  result: { version?: bigint; deleted?: boolean } = {},
): CallRecord {
  clock += 10;
  return {
    caller: 0,
    via: "test",
    op,
    userId: "u",
    sessionId: "s",
    startedAt: clock,
    endedAt: clock + 5,
    deadlineMs: 1000,
    code: outcome,
    ...result,
  };
}

const kinds = (records: CallRecord[]) => checkHistories(records).map((v) => v.kind);

describe("checkHistories", () => {
  it("accepts a history whose failed writes happened, or not, at their place", () => {
    expect(
      kinds([
        call("upsert", "ok", { version: 1n }),
        call("upsert", Code.Unavailable),
        call("get", "ok", { version: 2n }),
        call("upsert", Code.DeadlineExceeded),
        call("upsert", "ok", { version: 3n }),
        call("delete", Code.Unavailable),
        call("get", Code.NotFound),
        call("upsert", "ok", { version: 1n }),
        call("delete", "ok", { deleted: true }),
        call("get", Code.NotFound),
      ]),
    ).toEqual([]);
  });

  it("catches an acknowledged write that is gone", () => {
    expect(kinds([call("upsert", "ok", { version: 1n }), call("get", Code.NotFound)])).toEqual([
      "lost",
    ]);
    expect(
      kinds([
        call("upsert", "ok", { version: 1n }),
        call("upsert", "ok", { version: 2n }),
        call("get", "ok", { version: 1n }),
      ]),
    ).toEqual(["lost"]);
  });

  it("catches a deleted session that returns with no Upsert since", () => {
    expect(
      kinds([
        call("upsert", "ok", { version: 1n }),
        call("delete", "ok", { deleted: true }),
        call("get", "ok", { version: 1n }),
      ]),
    ).toEqual(["resurrected"]);
  });

  it("catches a failed write applied later, behind a later acknowledged one", () => {
    // The failed Upsert (v2) may apply at its place; showing up after the
    // acknowledged v2, as v3, it applied later: a zombie.
    expect(
      kinds([
        call("upsert", "ok", { version: 1n }),
        call("upsert", Code.Unavailable),
        call("upsert", "ok", { version: 2n }),
        call("get", "ok", { version: 3n }),
      ]),
    ).toEqual(["phantom"]);
  });

  it("catches any status but UNAVAILABLE and DEADLINE_EXCEEDED", () => {
    expect(kinds([call("upsert", Code.Internal), call("get", Code.NotFound)])).toEqual([
      "wrong code",
    ]);
  });
});

describe("lostAcknowledgedWrites", () => {
  const lost = (records: CallRecord[]) =>
    lostAcknowledgedWrites(records).map((r) => `${r.op}${r.version ?? ""}`);

  it("finds an acknowledged Upsert that a later read or write shows gone", () => {
    expect(
      lost([
        call("upsert", "ok", { version: 1n }),
        call("upsert", "ok", { version: 2n }),
        call("get", "ok", { version: 1n }),
      ]),
    ).toEqual(["upsert2"]);
    // A failover's new primary had version 2: the next Upsert builds on it.
    expect(
      lost([
        call("upsert", "ok", { version: 2n }),
        call("upsert", "ok", { version: 3n }),
        call("upsert", "ok", { version: 3n }),
      ]),
    ).toEqual(["upsert3"]);
    expect(lost([call("upsert", "ok", { version: 1n }), call("get", Code.NotFound)])).toEqual([
      "upsert1",
    ]);
  });

  it("finds an acknowledged Delete that a later read shows undone", () => {
    expect(
      lost([
        call("upsert", "ok", { version: 4n }),
        call("delete", "ok", { deleted: true }),
        call("upsert", Code.Unavailable),
        call("get", "ok", { version: 4n }),
      ]),
    ).toEqual(["delete"]);
  });

  it("counts nothing a failed write explains, nor a read of a write never acknowledged", () => {
    expect(
      lost([
        call("upsert", "ok", { version: 1n }),
        // Applied on a primary about to be demoted, read there, then gone.
        call("upsert", Code.Unavailable),
        call("get", "ok", { version: 2n }),
        call("get", "ok", { version: 1n }),
        call("delete", Code.Unavailable),
        call("get", Code.NotFound),
        call("delete", "ok", { deleted: false }),
        call("upsert", Code.Unavailable),
        call("get", "ok", { version: 1n }),
      ]),
    ).toEqual([]);
    // checkHistories holds the vanished read against the history.
    expect(
      kinds([
        call("upsert", "ok", { version: 1n }),
        call("upsert", Code.Unavailable),
        call("get", "ok", { version: 2n }),
        call("get", "ok", { version: 1n }),
      ]),
    ).toEqual(["lost"]);
  });
});
