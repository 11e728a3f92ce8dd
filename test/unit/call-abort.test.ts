import { describe, expect, it } from "vitest";
import { CallAbort } from "../../src/transport/call-abort.js";

describe("CallAbort", () => {
  it("tells each listener once, with the reason in place, and forgets removed ones", () => {
    const abort = new CallAbort();
    const heard: unknown[] = [];
    const removed = () => heard.push("removed");
    abort.addEventListener("abort", () => heard.push(abort.reason));
    abort.addEventListener("abort", removed);
    abort.removeEventListener("abort", removed);
    expect(abort.aborted).toBe(false);
    expect(() => abort.throwIfAborted()).not.toThrow();
    const reason = new Error("cancelled");
    abort.abort(reason);
    abort.abort(new Error("again"));
    expect(heard).toEqual([reason]);
    expect(abort.aborted).toBe(true);
    expect(() => abort.throwIfAborted()).toThrow(reason);
  });

  it("gives a standard AbortSignal that follows it, whether read before or after the abort", () => {
    const before = new CallAbort();
    const signal = before.signal;
    expect(signal).toBeInstanceOf(AbortSignal);
    expect(before.signal).toBe(signal);
    expect(signal.aborted).toBe(false);
    before.abort("deadline");
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe("deadline");

    const after = new CallAbort();
    after.abort("cancelled");
    expect(after.signal.aborted).toBe(true);
    expect(after.signal.reason).toBe("cancelled");
  });
});
