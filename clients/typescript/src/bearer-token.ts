/**
 * Bearer-token authentication for SessionStore calls, shared by the Node and
 * browser entries: it depends on @connectrpc/connect alone, so neither
 * entry pulls in the other's transport.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Where a call's bearer token comes from: the token itself, or a function
 * asked before every call, for tokens that rotate (a file re-read, a secret
 * manager, a workload identity that expires).
 */
export type BearerTokenSource = string | (() => string | Promise<string>);

/**
 * RFC 6750's b64token, which is what the server accepts after "Bearer ".
 * Anything else (a trailing newline from a file read, a space) would be
 * refused by the server or could not be sent as a header at all.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Why `token` cannot be sent, or undefined when it can; never repeats the token. */
function invalidToken(token: unknown): string | undefined {
  if (typeof token !== "string") return "is not a string";
  if (token === "") return "is empty";
  if (!B64TOKEN.test(token)) {
    return "is not an RFC 6750 bearer token (A-Z a-z 0-9 - . _ ~ + / then = padding); was it read with a trailing newline?";
  }
  return undefined;
}

/**
 * Checks a fixed token when the client is made, so a misconfigured token
 * fails at startup rather than at the first call.
 *
 * @throws TypeError saying what is wrong with the token, without the token.
 */
export function assertBearerToken(token: string): void {
  const problem = invalidToken(token);
  if (problem) throw new TypeError(`the bearer token ${problem}`);
}

/**
 * The `authorization` value of each call for `token`: "Bearer <token>", the
 * fixed token's checked once here, a function's asked and checked per call.
 * What bearerTokenInterceptor sends, and what the SDK's own gRPC transport
 * (grpc-unary-transport.ts) sends without an interceptor chain.
 *
 * @throws TypeError when a fixed token is not a valid bearer token; a
 *   function's invalid token rejects that call with UNAUTHENTICATED.
 */
export function bearerAuthorization(token: BearerTokenSource): () => string | Promise<string> {
  if (typeof token === "string") {
    assertBearerToken(token);
    const value = `Bearer ${token}`;
    return () => value;
  }
  return async () => {
    const current = await token();
    const problem = invalidToken(current);
    if (problem) {
      // Client-side, before anything is sent: the server never sees it.
      throw new ConnectError(`the bearer token function's token ${problem}`, Code.Unauthenticated);
    }
    return `Bearer ${current}`;
  };
}

/**
 * An interceptor that sends `authorization: Bearer <token>` on every call,
 * the credential SessionStore's AUTH_TOKENS_FILE lists. Pass a function to
 * have it asked per call (it may be async), so a rotated token is used from
 * the next call on without making a new client. A call that sets its own
 * `authorization` header (call option `headers`) keeps it: the caller asked
 * for that identity on that call.
 *
 * Use it with a transport of your own (`interceptors: [bearerTokenInterceptor(t)]`);
 * `createSessionStoreClient({ token })` adds it for you.
 *
 * @throws TypeError when a fixed token is not a valid bearer token (a
 *   function's tokens are checked per call: the call fails UNAUTHENTICATED).
 */
export function bearerTokenInterceptor(token: BearerTokenSource): Interceptor {
  const authorization = bearerAuthorization(token);
  return (next) => async (req) => {
    if (!req.header.has("authorization")) req.header.set("authorization", await authorization());
    return next(req);
  };
}
