import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RedisServerTls } from "../../harness/redis-server.js";

/** A key and certificate on disk, with their PEM text. */
export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** What a leaf certificate says about its holder. */
export interface LeafOptions {
  /** Subject alternative names, as openssl writes them: "DNS:localhost", "IP:127.0.0.1", "URI:spiffe://...". */
  readonly san: readonly string[];
  /** "server" or "client" (extended key usage). */
  readonly usage: "server" | "client";
  /** Issue it already expired (valid until yesterday). */
  readonly expired?: boolean;
}

/** A throwaway certificate authority in a temporary directory. */
export interface TestCa extends Issued {
  readonly name: string;
  /** Issues a leaf certificate signed by this CA; `name` becomes its file name and CN. */
  issue(name: string, options: LeafOptions): Issued;
}

/** Throwaway certificate authorities for one test file; remove() deletes every file. */
export interface TestPki {
  readonly dir: string;
  /** Creates a new self-signed CA (a "rogue" CA is just a second one). */
  ca(name: string): TestCa;
  remove(): void;
}

const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

function openssl(args: readonly string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * Makes certificates at test time with the openssl command line (Node's
 * crypto cannot sign certificates): P-256 keys, valid for a day, nothing
 * committed to the repository.
 */
export function createTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), "sessionstore-pki-"));
  let serial = 1;
  const read = (certFile: string, keyFile: string): Issued => ({
    certFile,
    keyFile,
    cert: readFileSync(certFile),
    key: readFileSync(keyFile),
  });
  return {
    dir,
    ca(name) {
      const certFile = join(dir, `${name}.ca.crt`);
      const keyFile = join(dir, `${name}.ca.key`);
      openssl([
        "req",
        "-x509",
        ...EC_KEY,
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "1",
        "-subj",
        `/CN=${name}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
      ]);
      return {
        name,
        ...read(certFile, keyFile),
        issue(leaf, options) {
          const leafCert = join(dir, `${leaf}.crt`);
          const leafKey = join(dir, `${leaf}.key`);
          const csr = join(dir, `${leaf}.csr`);
          const ext = join(dir, `${leaf}.ext`);
          openssl(["req", ...EC_KEY, "-keyout", leafKey, "-out", csr, "-subj", `/CN=${leaf}`]);
          writeFileSync(
            ext,
            [
              `subjectAltName=${options.san.join(",")}`,
              `extendedKeyUsage=${options.usage === "server" ? "serverAuth" : "clientAuth"}`,
              "basicConstraints=critical,CA:FALSE",
              "",
            ].join("\n"),
          );
          openssl([
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            certFile,
            "-CAkey",
            keyFile,
            "-set_serial",
            String(++serial),
            // A negative validity ends the certificate a day before it starts.
            "-days",
            options.expired ? "-1" : "1",
            "-out",
            leafCert,
            "-extfile",
            ext,
          ]);
          return read(leafCert, leafKey);
        },
      };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * What a TLS-only Redis that verifies its clients needs, from `ca`: its own
 * certificate for 127.0.0.1 (where every test client connects) and a client
 * certificate, shown by the harness's clients and by the store under test.
 */
export function mutualRedisTls(ca: TestCa, name: string): { tls: RedisServerTls; client: Issued } {
  const server = ca.issue(`${name}-server`, { san: ["IP:127.0.0.1"], usage: "server" });
  const client = ca.issue(`${name}-client`, { san: ["DNS:sessionstore"], usage: "client" });
  return {
    client,
    tls: {
      certFile: server.certFile,
      keyFile: server.keyFile,
      caFile: ca.certFile,
      authClients: true,
      clientCertFile: client.certFile,
      clientKeyFile: client.keyFile,
    },
  };
}
