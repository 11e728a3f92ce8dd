import type { ConnectError } from "@connectrpc/connect";
import { statusError } from "../error-info.js";
import type { Call, CallPolicy } from "./call.js";
import {
  bearerToken,
  type Credentials,
  type Grant,
  MALFORMED_HEADER,
  type Scope,
  scopeAllows,
} from "./credentials.js";

/** Why a call was refused, as sessionstore_auth_failures_total{reason} counts it. */
export type AuthFailure =
  | "missing_credentials"
  | "malformed_header"
  | "unknown_token"
  | "unknown_certificate"
  | "ambiguous_certificate"
  | "identity_mismatch"
  | "permission_denied";

/** What a procedure asks of its caller. */
export type Access =
  /** Anyone, credentials or not (health probes). */
  | "open"
  /** Any authenticated caller, whatever its scope (reflection). */
  | "authenticated"
  | Scope;

/** Options of {@link authPolicy}. */
export interface AuthPolicyOptions {
  /** The callers allowed in; replaced on reload with AuthPolicy.update. */
  readonly credentials: Credentials;
  /** What each procedure ("package.Service/Method") requires. */
  readonly accessOf: (procedure: string) => Access;
  /** Whether the port verifies client certificates (mTLS): cert: lines can match only then. */
  readonly clientCertificates: boolean;
  /** Told of each refused call, by reason. */
  readonly onFailure: (reason: AuthFailure) => void;
}

/** The auth policy, whose credentials can be replaced while it runs (SIGHUP). */
export interface AuthPolicy extends CallPolicy {
  update(credentials: Credentials): void;
}

/**
 * Authentication and authorization as a call policy: identifies the caller
 * by its bearer token (`authorization: Bearer <token>`, the same header on
 * every protocol) and, under mTLS, its client certificate, then checks that
 * its scope allows the procedure. It sets `call.caller` for the policies
 * after it (rate limits) and the call's log line.
 *
 * A certificate counts as a credential when one of its SANs has a `cert:`
 * line; when a call presents both a token and such a certificate, both must
 * be valid and name the same caller, whose lesser scope applies. Refusals
 * are UNAUTHENTICATED (no, malformed or unknown credentials) or
 * PERMISSION_DENIED (a known caller without the scope); their messages name
 * what is wrong and never echo a secret. Their ErrorInfo says why as the
 * metric does (metadata `failure`, such as unknown_token) and, for a
 * missing scope, the scope the method needs (`scope`) and the method.
 */
export function authPolicy(options: AuthPolicyOptions): AuthPolicy {
  let credentials = options.credentials;
  const refuse = (failure: AuthFailure, message: string): ConnectError => {
    options.onFailure(failure);
    return statusError("UNAUTHENTICATED", message, { failure });
  };

  const identify = (call: Call): { name: string; scope: Scope; grant: Grant } => {
    const header = call.headers.get("authorization");
    let byToken: Grant | undefined;
    if (header !== undefined) {
      const token = bearerToken(header);
      if (token === "malformed") {
        throw refuse("malformed_header", MALFORMED_HEADER);
      }
      byToken = credentials.byToken(token);
      if (!byToken) throw refuse("unknown_token", "unknown bearer token");
    }
    const certificate = options.clientCertificates ? call.peer.certificate : undefined;
    const byCertificate = certificate ? credentials.byCertificate(certificate) : [];
    if (byCertificate.length > 1 && new Set(byCertificate.map((g) => g.name)).size > 1) {
      throw refuse(
        "ambiguous_certificate",
        "the client certificate's names match more than one caller",
      );
    }
    const certGrant = byCertificate[0];
    if (byToken && certGrant) {
      if (byToken.name !== certGrant.name) {
        throw refuse(
          "identity_mismatch",
          "the bearer token and the client certificate belong to different callers",
        );
      }
      const scope = scopeAllows(byToken.scope, certGrant.scope) ? certGrant.scope : byToken.scope;
      return { name: byToken.name, scope, grant: byToken };
    }
    const grant = byToken ?? certGrant;
    if (grant) return { name: grant.name, scope: grant.scope, grant };
    if (certificate) {
      throw refuse(
        "unknown_certificate",
        "the client certificate names no known caller, and no bearer token was sent",
      );
    }
    throw refuse(
      "missing_credentials",
      "missing credentials: send 'authorization: Bearer <token>'" +
        (options.clientCertificates ? " or a client certificate of a known caller" : ""),
    );
  };

  return {
    name: "auth",
    ...(options.clientCertificates ? { requires: ["peer-certificate"] as const } : {}),
    update(next) {
      credentials = next;
    },
    begin(call) {
      const access = options.accessOf(call.procedure);
      if (access === "open") return undefined;
      const { name, scope, grant } = identify(call);
      // Known even when refused below: the log line of the refusal names it.
      call.caller = { name, rate: grant.rate };
      if (access !== "authenticated" && !scopeAllows(scope, access)) {
        options.onFailure("permission_denied");
        const method = call.procedure.slice(call.procedure.lastIndexOf("/") + 1);
        throw statusError(
          "PERMISSION_DENIED",
          `the caller's scope (${scope}) does not allow ${method}, which needs ${access}`,
          { failure: "permission_denied", scope: access, method },
        );
      }
      return undefined;
    },
  };
}
