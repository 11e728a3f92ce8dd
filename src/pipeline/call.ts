import type { Code } from "@connectrpc/connect";

/** The wire protocols the one port speaks. */
export type Protocol = "grpc" | "grpc-web" | "connect";

/** Request headers (gRPC metadata), looked up by lower-case name. */
export interface CallHeaders {
  /** The header's value, several values joined with ", "; undefined when absent. */
  get(name: string): string | undefined;
}

/** Who is calling, as the connection tells it. */
export interface Peer {
  /** The client's IP address; undefined once the connection is gone. */
  readonly address: string | undefined;
  /**
   * The client's TLS certificate, when the connection is TLS and the
   * certificate was verified against the client CA (mTLS); else undefined.
   * Only transports that provide "peer-certificate" fill it in.
   */
  readonly certificate: PeerCertificate | undefined;
}

/** The identities a verified client certificate carries (its subject alternative names). */
export interface PeerCertificate {
  /** URI SANs, e.g. a SPIFFE id "spiffe://prod/ns/billing/sa/api". */
  readonly uris: readonly string[];
  /** DNS SANs. */
  readonly dnsNames: readonly string[];
}

/** A request rate: a steady number per second, with bursts up to `burst`. */
export interface Rate {
  readonly perSecond: number;
  readonly burst: number;
}

/** An authenticated caller, as the auth policy identified it. */
export interface Caller {
  /** The caller's NAME from the tokens file: in logs and metric labels, never a secret. */
  readonly name: string;
  /** The caller's own rate limit, overriding RATE_LIMIT; undefined: the default. */
  readonly rate: Rate | undefined;
}

/**
 * One RPC as every policy sees it, whatever its protocol and whichever
 * transport serves it. Transports build it from what they read before the
 * request message: policies run before a byte of the message is decoded.
 */
export interface Call {
  /** "package.Service/Method", e.g. "sessionstore.v1.SessionStoreService/Get". */
  readonly procedure: string;
  readonly protocol: Protocol;
  /** The transport serving the call (see Transport.name), for logs. */
  readonly transport: string;
  /** The HTTP version of the connection: "2" or "1.1". */
  readonly httpVersion: string;
  readonly headers: CallHeaders;
  readonly peer: Peer;
  /**
   * When the call's deadline passes, in Unix milliseconds: the caller's, or
   * MAX_DEADLINE's when it sent none or a longer one; undefined only when
   * its timeout header is malformed (the call is then rejected).
   */
  readonly deadline: number | undefined;
  /**
   * Aborts when the call ends early: the client cancels or goes away, the
   * deadline passes, or shutdown cancels what is still running.
   */
  readonly signal: AbortSignal;
  /**
   * Who the call is from, once the auth policy has identified it; undefined
   * for anonymous calls (no credentials configured, or an open service such
   * as health). Later policies and the end of the call read it.
   */
  caller: Caller | undefined;
}

/** The status code a call ended with: OK is 0, then Connect's codes. */
export type StatusCode = Code | typeof OK;

/** gRPC's OK, which Connect's Code has no member for. */
export const OK = 0;

/** Told once how a call ended. */
export type CallEnd = (code: StatusCode) => void;

/**
 * What a policy returns when the call's handler must run inside something
 * it sets up, such as the tracing policy's span as the active context (an
 * AsyncLocalStorage), so the handler's own work (the store's spans) hangs
 * under it. Both transports run the handler through Admission.run.
 */
export interface CallScope {
  /** Told once how the call ended, as a CallEnd is. */
  readonly end: CallEnd;
  /** Runs the handler, returning what it returns; synchronously calls `handler`. */
  run<T>(handler: () => T): T;
}

/**
 * Something a policy may need that not every transport can provide; the
 * pipeline refuses at startup to run a policy on a transport that lacks
 * what it requires, rather than letting it silently see nothing there.
 *
 * - "peer-certificate": the verified TLS client certificate (mTLS).
 */
export type CallFeature = "peer-certificate";

/**
 * A per-call policy (telemetry, authentication, limits, tracing): written
 * once, run by the pipeline for every call on every transport.
 */
export interface CallPolicy {
  /** A short name for errors and logs. */
  readonly name: string;
  /** What the policy needs beyond the Call's fields (checked at startup). */
  readonly requires?: readonly CallFeature[];
  /**
   * Runs before the handler, in the pipeline's order. Throwing (or
   * rejecting with) a ConnectError rejects the call with that status, and
   * the handler never runs. May return the function to be told the final
   * status code of the call; it is called for rejected calls too. A
   * CallScope also wraps the handler's run.
   */
  begin(call: Call): CallEnd | CallScope | undefined | Promise<CallEnd | CallScope | undefined>;
}

/** A way calls arrive (the gRPC fast path, connect-node), as the pipeline checks it. */
export interface Transport {
  readonly name: string;
  /** The call features this transport can provide. */
  readonly provides: ReadonlySet<CallFeature>;
}
