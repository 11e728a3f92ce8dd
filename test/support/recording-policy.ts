import type { Call, CallPolicy, StatusCode } from "../../src/pipeline/call.js";

/** What a recording policy saw of one call. */
export interface RecordedCall {
  readonly procedure: string;
  readonly protocol: string;
  readonly transport: string;
  readonly httpVersion: string;
  readonly contentType: string | undefined;
  /** The final status code, once the pipeline reported it. */
  code: StatusCode | undefined;
}

/**
 * A test policy that records every call it sees and the code it ends with:
 * how a test knows which protocol, transport and HTTP version served a call.
 */
export function recordingPolicy(): CallPolicy & {
  readonly calls: RecordedCall[];
  /** The calls recorded from now on. */
  since(): () => RecordedCall[];
} {
  const calls: RecordedCall[] = [];
  return {
    name: "recording",
    calls,
    since() {
      const start = calls.length;
      return () => calls.slice(start);
    },
    begin(call: Call) {
      const recorded: RecordedCall = {
        procedure: call.procedure,
        protocol: call.protocol,
        transport: call.transport,
        httpVersion: call.httpVersion,
        contentType: call.headers.get("content-type"),
        code: undefined,
      };
      calls.push(recorded);
      return (code) => {
        recorded.code = code;
      };
    },
  };
}
