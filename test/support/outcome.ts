import { type Code, ConnectError } from "@connectrpc/connect";
import { OK } from "../../src/pipeline/call.js";

/** How a call ended, as its client saw it: OK, or the status code and message. */
export interface Outcome {
  readonly code: Code | typeof OK;
  readonly message: string;
}

/**
 * Runs a call and says how it ended, for tests that compare outcomes
 * across clients: a connect client's ConnectError and a grpc-js
 * ServiceError (a numeric `code` and `details`) come out alike.
 */
export async function outcome(call: () => Promise<unknown>): Promise<Outcome> {
  try {
    await call();
    return { code: OK, message: "" };
  } catch (error) {
    if (error instanceof ConnectError) return { code: error.code, message: error.rawMessage };
    const grpcJs = error as { code?: unknown; details?: unknown };
    if (typeof grpcJs.code === "number" && typeof grpcJs.details === "string") {
      return { code: grpcJs.code as Code, message: grpcJs.details };
    }
    const e = ConnectError.from(error);
    return { code: e.code, message: e.rawMessage };
  }
}
