import { readFileSync, statSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { type Config, ConfigError, type HealthcheckConfig } from "./config.js";
import { bearerToken, Credentials, CredentialsFileError } from "./pipeline/credentials.js";
import type { TlsCredentials } from "./transport/listener.js";

/**
 * Reads a file a setting names. The error names the setting and the path
 * and why (ENOENT, EACCES), never a byte of the contents.
 */
function readSettingFile(setting: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ConfigError(
      `cannot read ${setting} ${JSON.stringify(path)}: ${typeof code === "string" ? code : "unreadable"}`,
    );
  }
}

/**
 * The main port's TLS credentials from TLS_CERT_FILE, TLS_KEY_FILE and
 * TLS_CLIENT_CA_FILE, or undefined for cleartext. Checked by building a
 * secure context, so a key that does not match its certificate or a file
 * that is not PEM fails here, at startup or on reload, not at the first
 * handshake.
 *
 * @throws ConfigError naming the setting that is wrong.
 */
export function readTlsCredentials(config: Config): TlsCredentials | undefined {
  if (config.tlsCertFile === undefined || config.tlsKeyFile === undefined) return undefined;
  const credentials: TlsCredentials = {
    cert: readSettingFile("TLS_CERT_FILE", config.tlsCertFile),
    key: readSettingFile("TLS_KEY_FILE", config.tlsKeyFile),
    ...(config.tlsClientCaFile === undefined
      ? {}
      : { clientCa: readSettingFile("TLS_CLIENT_CA_FILE", config.tlsClientCaFile) }),
  };
  try {
    createSecureContext({ cert: credentials.cert, key: credentials.key });
  } catch (error) {
    throw new ConfigError(
      `TLS_CERT_FILE and TLS_KEY_FILE are not a PEM certificate and its private key (${openSslReason(error)})`,
    );
  }
  if (credentials.clientCa) {
    try {
      createSecureContext({ ca: credentials.clientCa });
    } catch (error) {
      throw new ConfigError(
        `TLS_CLIENT_CA_FILE is not a PEM CA certificate (${openSslReason(error)})`,
      );
    }
  }
  return credentials;
}

/** OpenSSL's reason for refusing a PEM file, which names no secret ("KEY_VALUES_MISMATCH"). */
function openSslReason(error: unknown): string {
  const reason = (error as { reason?: unknown; code?: unknown }).reason;
  return typeof reason === "string" ? reason : "unreadable";
}

/**
 * The callers of AUTH_TOKENS_FILE, or undefined when it is not set.
 *
 * @throws ConfigError naming the file and the first bad line and why.
 */
export function readCredentials(config: Config): Credentials | undefined {
  if (config.authTokensFile === undefined) return undefined;
  const text = readSettingFile("AUTH_TOKENS_FILE", config.authTokensFile).toString("utf8");
  try {
    return Credentials.parse(text);
  } catch (error) {
    if (!(error instanceof CredentialsFileError)) throw error;
    throw new ConfigError(
      `AUTH_TOKENS_FILE ${JSON.stringify(config.authTokensFile)} ${error.message}`,
    );
  }
}

/**
 * A warning for a tokens file that holds plain tokens and that other users
 * of the machine may read, or undefined when there is nothing to say.
 */
export function tokensFileExposure(config: Config, credentials: Credentials): string | undefined {
  if (config.authTokensFile === undefined || credentials.plainTokens === 0) return undefined;
  let mode: number;
  try {
    mode = statSync(config.authTokensFile).mode;
  } catch {
    return undefined;
  }
  if ((mode & 0o077) === 0) return undefined;
  return `AUTH_TOKENS_FILE holds ${credentials.plainTokens} plain token(s) and is readable by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 it, or write the tokens as sha256:<digest>`;
}

/** What the container health check needs to reach the port: TLS material and a token. */
export interface HealthcheckCredentials {
  /** Undefined: the port serves cleartext. */
  readonly tls:
    | {
        /** The trust anchors the server's certificate must chain to. */
        readonly ca: Buffer;
        /** The client certificate and key, under mutual TLS. */
        readonly cert?: Buffer;
        readonly key?: Buffer;
      }
    | undefined;
  /** The bearer token to send, or undefined for none. */
  readonly token: string | undefined;
}

/**
 * Reads the files of the health check's settings. The CA defaults to
 * TLS_CERT_FILE: the check runs beside the server, with the server's own
 * files, so the chain the server presents is the one thing it can trust
 * without being told more (the caller allows a partial chain for that).
 *
 * @throws ConfigError naming the setting whose file is unreadable or wrong,
 *   never a byte of a key or the token.
 */
export function readHealthcheckCredentials(
  server: Config,
  check: HealthcheckConfig,
): HealthcheckCredentials {
  let token: string | undefined;
  if (check.tokenFile !== undefined) {
    // A file written by `echo` ends in a newline, which is not part of the token.
    token = readSettingFile("HEALTHCHECK_TOKEN_FILE", check.tokenFile).toString("utf8").trim();
    if (bearerToken(`Bearer ${token}`) === "malformed") {
      throw new ConfigError(
        `HEALTHCHECK_TOKEN_FILE ${JSON.stringify(check.tokenFile)} does not hold one bearer token (A-Z a-z 0-9 - . _ ~ + / then = padding)`,
      );
    }
  }
  if (server.tlsCertFile === undefined) return { tls: undefined, token };
  const ca =
    check.caFile === undefined
      ? readSettingFile("TLS_CERT_FILE", server.tlsCertFile)
      : readSettingFile("HEALTHCHECK_CA_FILE", check.caFile);
  try {
    createSecureContext({ ca });
  } catch (error) {
    throw new ConfigError(
      `${check.caFile === undefined ? "TLS_CERT_FILE" : "HEALTHCHECK_CA_FILE"} is not a PEM certificate (${openSslReason(error)})`,
    );
  }
  if (check.certFile === undefined || check.keyFile === undefined) return { tls: { ca }, token };
  const cert = readSettingFile("HEALTHCHECK_CERT_FILE", check.certFile);
  const key = readSettingFile("HEALTHCHECK_KEY_FILE", check.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new ConfigError(
      `HEALTHCHECK_CERT_FILE and HEALTHCHECK_KEY_FILE are not a PEM certificate and its private key (${openSslReason(error)})`,
    );
  }
  return { tls: { ca, cert, key }, token };
}
