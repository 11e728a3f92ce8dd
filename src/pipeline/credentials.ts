import { timingSafeEqual } from "node:crypto";
import { ANONYMOUS } from "../observability/telemetry.js";
import { sha256 } from "../sha256.js";
import type { PeerCertificate, Rate } from "./call.js";
import { parseRate } from "./rate.js";

/**
 * What a caller may do. Each scope includes the ones before it: `read`
 * (Get, ListByUser), `write` (read and Upsert, Touch, Delete), `admin`
 * (everything, DeleteByUser and any RPC added later included).
 */
export const SCOPES = ["read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** Whether `held` allows what `needed` guards. */
export function scopeAllows(held: Scope, needed: Scope): boolean {
  return SCOPES.indexOf(held) >= SCOPES.indexOf(needed);
}

/** One line of the tokens file: a caller, what it may do, and how it proves who it is. */
export interface Grant {
  readonly name: string;
  readonly scope: Scope;
  /** The caller's own rate limit; undefined: the server's default. */
  readonly rate: Rate | undefined;
  /** The line it came from, for messages (never the secret). */
  readonly line: number;
}

/** A line that cannot be read; the message names the line and why, never a secret. */
export class CredentialsFileError extends Error {
  override readonly name = "CredentialsFileError";
  constructor(
    readonly line: number,
    readonly reason: string,
  ) {
    super(`line ${line}: ${reason}`);
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** RFC 6750's b64token: what may follow "Bearer " in an authorization header. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/**
 * The token of an `authorization: Bearer <token>` header (the scheme is
 * case-insensitive, as HTTP's are); "malformed" for any other value.
 */
export function bearerToken(header: string): string | "malformed" {
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  return match ? (match[1] as string) : "malformed";
}

/** The error message for an authorization header that bearerToken cannot read. */
export const MALFORMED_HEADER = "malformed authorization header: expected 'Bearer <token>'";

/** A plain token shorter than this is too easy to guess. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * The callers the tokens file grants access to: bearer tokens (kept only as
 * SHA-256 digests) and client-certificate identities (URI or DNS SANs).
 */
export class Credentials {
  private constructor(
    private readonly tokens: readonly { digest: Buffer; grant: Grant }[],
    private readonly certificates: ReadonlyMap<string, Grant>,
    /** How many tokens the file holds in plain text rather than as sha256: digests. */
    readonly plainTokens: number,
  ) {}

  /** How many lines grant access by token and by certificate. */
  get size(): { tokens: number; certificates: number } {
    return { tokens: this.tokens.length, certificates: this.certificates.size };
  }

  /**
   * Finds the grant of a presented bearer token. Compares the token's
   * digest with every known digest in constant time and without stopping
   * at a match, so neither the time taken nor a hash lookup tells an
   * attacker how close a guess came or where it matched.
   */
  byToken(token: string): Grant | undefined {
    const presented = sha256(token);
    let found: Grant | undefined;
    for (const entry of this.tokens) {
      if (timingSafeEqual(presented, entry.digest) && found === undefined) found = entry.grant;
    }
    return found;
  }

  /**
   * The grants a verified client certificate's SANs match, URI SANs first;
   * several names may match when a certificate carries several SANs.
   */
  byCertificate(certificate: PeerCertificate): Grant[] {
    const grants: Grant[] = [];
    for (const san of [...certificate.uris, ...certificate.dnsNames]) {
      const grant = this.certificates.get(san);
      if (grant && !grants.includes(grant)) grants.push(grant);
    }
    return grants;
  }

  /**
   * Reads the tokens file: one grant per line, `NAME SCOPE TOKEN [RATE]`,
   * fields separated by whitespace, `#` comments and blank lines ignored.
   * TOKEN is the secret itself (at least 16 characters of RFC 6750's token
   * alphabet), `sha256:<64 hex>` (the file holds only the secret's digest),
   * or `cert:<SAN>` (a client certificate's URI or DNS SAN, under mTLS).
   * One NAME may have several lines: tokens being rotated stay valid
   * together.
   *
   * RATE, a rate as RATE_LIMIT takes it (`500/s,burst=1000`, or `off`),
   * overrides RATE_LIMIT for that line's caller.
   *
   * @throws CredentialsFileError at the first bad line.
   */
  static parse(text: string): Credentials {
    const tokens: { digest: Buffer; grant: Grant }[] = [];
    const certificates = new Map<string, Grant>();
    const tokenLines = new Map<string, number>();
    let plainTokens = 0;
    const lines = text.split(/\r?\n/);
    for (let index = 0; index < lines.length; index++) {
      const line = index + 1;
      const content = (lines[index] as string).replace(/(^|\s)#.*$/, "").trim();
      if (content === "") continue;
      const fields = content.split(/\s+/);
      if (fields.length < 3 || fields.length > 4) {
        throw new CredentialsFileError(
          line,
          `expected NAME SCOPE TOKEN [RATE], found ${fields.length} field${fields.length === 1 ? "" : "s"}`,
        );
      }
      const [name, scope, secret, rateText] = fields as [string, string, string, string?];
      if (!NAME.test(name) || name === ANONYMOUS) {
        throw new CredentialsFileError(
          line,
          `NAME must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, and not "${ANONYMOUS}"`,
        );
      }
      if (!(SCOPES as readonly string[]).includes(scope)) {
        throw new CredentialsFileError(line, `SCOPE must be one of ${SCOPES.join(", ")}`);
      }
      let rate: Rate | undefined;
      if (rateText !== undefined) {
        const parsed = parseRate(rateText);
        if (typeof parsed === "string")
          throw new CredentialsFileError(line, `RATE must be ${parsed}`);
        rate = parsed;
      }
      const grant: Grant = { name, scope: scope as Scope, rate, line };
      if (secret.startsWith("cert:")) {
        const san = secret.slice("cert:".length);
        if (san === "") throw new CredentialsFileError(line, "cert: needs a URI or DNS SAN");
        const earlier = certificates.get(san);
        if (earlier) {
          throw new CredentialsFileError(line, `the same certificate SAN as line ${earlier.line}`);
        }
        certificates.set(san, grant);
        continue;
      }
      let secretDigest: Buffer;
      if (secret.startsWith("sha256:")) {
        const hex = secret.slice("sha256:".length);
        if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
          throw new CredentialsFileError(line, "sha256: must be followed by 64 hex digits");
        }
        secretDigest = Buffer.from(hex, "hex");
      } else {
        if (secret.length < MIN_TOKEN_LENGTH || !BEARER_TOKEN.test(secret)) {
          throw new CredentialsFileError(
            line,
            `TOKEN must be at least ${MIN_TOKEN_LENGTH} characters of A-Z a-z 0-9 - . _ ~ + / (then = padding), sha256:<64 hex>, or cert:<SAN>`,
          );
        }
        secretDigest = sha256(secret);
        plainTokens++;
      }
      const key = secretDigest.toString("hex");
      const earlier = tokenLines.get(key);
      if (earlier !== undefined) {
        throw new CredentialsFileError(line, `the same token as line ${earlier}`);
      }
      tokenLines.set(key, line);
      tokens.push({ digest: secretDigest, grant });
    }
    return new Credentials(tokens, certificates, plainTokens);
  }
}
