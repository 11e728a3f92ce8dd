import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/observability/logger.js";
import type { Call, CallPolicy } from "../../src/pipeline/call.js";
import { type Admission, createPipeline } from "../../src/pipeline/pipeline.js";

const logger = createLogger("silent");

const call: Call = {
  procedure: "test.v1.Service/Method",
  protocol: "grpc",
  transport: "test",
  httpVersion: "2",
  headers: { get: () => undefined },
  peer: { address: "127.0.0.1", certificate: undefined },
  deadline: undefined,
  signal: new AbortController().signal,
  caller: undefined,
};

/** A policy that logs its begin and end to `events`, and may reject or be async. */
function policy(
  name: string,
  events: string[],
  behaviour: { reject?: unknown; async?: boolean; noEnd?: boolean } = {},
): CallPolicy {
  return {
    name,
    begin() {
      events.push(`begin ${name}`);
      const run = () => {
        if (behaviour.reject !== undefined) throw behaviour.reject;
        return behaviour.noEnd ? undefined : (code: number) => events.push(`end ${name} ${code}`);
      };
      return behaviour.async ? Promise.resolve().then(run) : run();
    },
  };
}

function pipelineOf(...policies: CallPolicy[]) {
  return createPipeline({ policies, transports: [], logger });
}

describe("createPipeline", () => {
  it("begins policies in order and tells them the end in reverse", () => {
    const events: string[] = [];
    const admission = pipelineOf(
      policy("a", events),
      policy("b", events, { noEnd: true }),
      policy("c", events),
    ).start(call) as Admission;
    expect(admission.rejection).toBeUndefined();
    admission.finish(5);
    admission.finish(0);
    expect(events).toEqual(["begin a", "begin b", "begin c", "end c 5", "end a 5"]);
  });

  it("stops at a rejection: later policies never begin, earlier ones hear its code", () => {
    const events: string[] = [];
    const rejection = new ConnectError("no", Code.PermissionDenied);
    const admission = pipelineOf(
      policy("a", events),
      policy("b", events, { reject: rejection }),
      policy("c", events),
    ).start(call) as Admission;
    expect(admission.rejection).toBe(rejection);
    admission.finish(rejection.code);
    expect(events).toEqual(["begin a", "begin b", `end a ${Code.PermissionDenied}`]);
  });

  it("waits for asynchronous policies, in order, and stays synchronous without them", async () => {
    const events: string[] = [];
    const sync = pipelineOf(policy("a", events)).start(call);
    expect(sync).not.toBeInstanceOf(Promise);
    const started = pipelineOf(
      policy("b", events, { async: true }),
      policy("c", events),
      policy("d", events, { async: true, reject: new ConnectError("late", Code.Unauthenticated) }),
    ).start(call);
    expect(started).toBeInstanceOf(Promise);
    const admission = await started;
    expect(admission.rejection?.code).toBe(Code.Unauthenticated);
    admission.finish(Code.Unauthenticated);
    expect(events).toEqual([
      "begin a",
      "begin b",
      "begin c",
      "begin d",
      `end c ${Code.Unauthenticated}`,
      `end b ${Code.Unauthenticated}`,
    ]);
  });

  it("turns a policy's unexpected failure into a generic INTERNAL", () => {
    const events: string[] = [];
    const admission = pipelineOf(
      policy("a", events, { reject: new Error("bug with user-42 inside") }),
    ).start(call) as Admission;
    expect(admission.rejection).toBeInstanceOf(ConnectError);
    expect(admission.rejection?.code).toBe(Code.Internal);
    expect(admission.rejection?.rawMessage).toBe("internal error");
  });

  it("keeps telling the other policies when one fails at the end", () => {
    const events: string[] = [];
    const failing: CallPolicy = {
      name: "failing",
      begin: () => () => {
        throw new Error("end failed");
      },
    };
    const admission = pipelineOf(policy("a", events), failing).start(call) as Admission;
    admission.finish(0);
    expect(events).toEqual(["begin a", "end a 0"]);
  });
});

describe("CallScope", () => {
  /** A policy whose scope logs entering and leaving the handler's run. */
  function scoped(name: string, events: string[], async = false): CallPolicy {
    return {
      name,
      begin() {
        const scope = {
          end: (code: number) => events.push(`end ${name} ${code}`),
          run<T>(handler: () => T): T {
            events.push(`enter ${name}`);
            try {
              return handler();
            } finally {
              events.push(`leave ${name}`);
            }
          },
        };
        return async ? Promise.resolve(scope) : scope;
      },
    };
  }

  it("runs the handler inside every scope, the first policy's outermost, and tells their ends", async () => {
    const events: string[] = [];
    const admission = await pipelineOf(
      scoped("a", events),
      policy("b", events),
      scoped("c", events, true),
    ).start(call);
    expect(admission.run(() => events.push("handler") && 42)).toBe(42);
    admission.finish(0);
    expect(events).toEqual([
      "begin b",
      "enter a",
      "enter c",
      "handler",
      "leave c",
      "leave a",
      "end c 0",
      "end b 0",
      "end a 0",
    ]);
  });

  it("without scopes, run simply calls the handler", () => {
    const admission = pipelineOf(policy("a", [])).start(call) as Admission;
    expect(admission.run(() => "result")).toBe("result");
  });

  it("a rejected call's scopes are told its end", () => {
    const events: string[] = [];
    const rejection = new ConnectError("no", Code.PermissionDenied);
    const admission = pipelineOf(
      scoped("a", events),
      policy("b", events, { reject: rejection }),
    ).start(call) as Admission;
    expect(admission.rejection).toBe(rejection);
    admission.finish(Code.PermissionDenied);
    expect(events).toEqual(["begin b", `end a ${Code.PermissionDenied}`]);
  });
});
