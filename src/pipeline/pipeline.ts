import { ConnectError } from "@connectrpc/connect";
import { statusError } from "../error-info.js";
import type { Logger } from "../observability/logger.js";
import type { Call, CallEnd, CallPolicy, CallScope, StatusCode, Transport } from "./call.js";

/** Whether a call may go on to its handler, and how to report its end. */
export interface Admission {
  /** Set when a policy rejected the call: answer with this status. */
  readonly rejection: ConnectError | undefined;
  /**
   * Tells every policy that began, last first, the status the call ended
   * with (the rejection's code for a rejected call). Call it exactly once,
   * when the status has been sent or the call was cancelled.
   */
  finish(code: StatusCode): void;
  /**
   * Runs the call's handler inside what the policies' CallScopes set up
   * (the first policy's outermost); with none, simply calls it.
   */
  run<T>(handler: () => T): T;
}

/** The ordered policies every call passes through. */
export interface Pipeline {
  readonly policies: readonly CallPolicy[];
  /**
   * Starts a call: runs each policy's begin in order until one rejects.
   * Synchronous when every policy is, so the common case costs no extra
   * promise.
   */
  start(call: Call): Admission | Promise<Admission>;
}

/** Options of {@link createPipeline}. */
export interface PipelineOptions {
  /** In order: the first begins first and is told the end last (the outermost). */
  readonly policies: readonly CallPolicy[];
  /** Every transport that will run the pipeline; each must provide what each policy requires. */
  readonly transports: readonly Transport[];
  /** Where a policy's unexpected failure is logged (the caller sees a generic INTERNAL). */
  readonly logger: Logger;
}

/**
 * Builds the one pipeline all transports run. Fails at once, naming the
 * policy and the transport, when a transport cannot provide what a policy
 * requires: a policy that one transport would silently skip is a bypass.
 */
export function createPipeline(options: PipelineOptions): Pipeline {
  const { policies, transports, logger } = options;
  for (const policy of policies) {
    for (const feature of policy.requires ?? []) {
      for (const transport of transports) {
        if (!transport.provides.has(feature)) {
          throw new Error(
            `the ${policy.name} policy needs ${feature}, which the ${transport.name} transport cannot provide`,
          );
        }
      }
    }
  }

  const reject = (begun: Begun, error: unknown, policy: CallPolicy): Admission => {
    if (error instanceof ConnectError) return new CallAdmission(begun, logger, error);
    logger.error({ err: error, policy: policy.name }, "a call policy failed");
    return new CallAdmission(begun, logger, statusError("INTERNAL", "internal error"));
  };

  const startAt = (call: Call, from: number, begun: Begun): Admission | Promise<Admission> => {
    for (let i = from; i < policies.length; i++) {
      const policy = policies[i] as CallPolicy;
      let result: ReturnType<CallPolicy["begin"]>;
      try {
        result = policy.begin(call);
      } catch (error) {
        return reject(begun, error, policy);
      }
      if (result instanceof Promise) {
        return result.then(
          (end) => {
            begun.add(end);
            return startAt(call, i + 1, begun);
          },
          (error: unknown) => reject(begun, error, policy),
        );
      }
      begun.add(result);
    }
    return new CallAdmission(begun, logger, undefined);
  };

  return {
    policies,
    start: (call) => startAt(call, 0, new Begun()),
  };
}

/** What the policies that began a call returned: their ends, and their scopes. */
class Begun {
  readonly ends: CallEnd[] = [];
  /** Undefined until a policy returns a CallScope: most calls have none. */
  scopes: CallScope[] | undefined;

  add(result: CallEnd | CallScope | undefined): void {
    if (result === undefined) return;
    if (typeof result === "function") {
      this.ends.push(result);
      return;
    }
    this.ends.push(result.end);
    if (this.scopes === undefined) this.scopes = [result];
    else this.scopes.push(result);
  }
}

/** An Admission: a class rather than closures, as one is made per call. */
class CallAdmission implements Admission {
  private finished = false;

  constructor(
    private readonly begun: Begun,
    private readonly logger: Logger,
    readonly rejection: ConnectError | undefined,
  ) {}

  run<T>(handler: () => T): T {
    const { scopes } = this.begun;
    if (scopes === undefined) return handler();
    let wrapped = handler;
    for (let i = scopes.length - 1; i >= 0; i--) {
      const scope = scopes[i] as CallScope;
      const inner = wrapped;
      wrapped = () => scope.run(inner);
    }
    return wrapped();
  }

  finish(code: StatusCode): void {
    if (this.finished) return;
    this.finished = true;
    const { ends } = this.begun;
    for (let i = ends.length - 1; i >= 0; i--) {
      try {
        (ends[i] as CallEnd)(code);
      } catch (error) {
        this.logger.error({ err: error }, "a call policy failed at the end of a call");
      }
    }
  }
}
