import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Credentials, CredentialsFileError, scopeAllows } from "../../src/pipeline/credentials.js";
import { parseSubjectAltName } from "../../src/transport/peer-certificate.js";

const SECRET = "s3cr3t-token-of-the-billing-api";
const OTHER = "another-long-enough-secret-token";

function parseError(text: string): CredentialsFileError {
  try {
    Credentials.parse(text);
  } catch (error) {
    if (error instanceof CredentialsFileError) return error;
    throw error;
  }
  throw new Error("the file parsed");
}

describe("the tokens file", () => {
  it("reads names, scopes, plain and hashed tokens and certificate identities", () => {
    const digest = createHash("sha256").update(OTHER).digest("hex").toUpperCase();
    const credentials = Credentials.parse(
      [
        "# comment line",
        "",
        `billing  write  ${SECRET}   # trailing comment`,
        `\tbilling\tread\tsha256:${digest}\t10/s,burst=20`,
        "mesh admin cert:spiffe://prod/ns/billing/sa/api#frag",
        "edge read cert:edge.internal",
      ].join("\r\n"),
    );
    expect(credentials.size).toEqual({ tokens: 2, certificates: 2 });
    expect(credentials.byToken(SECRET)).toEqual({
      name: "billing",
      scope: "write",
      rate: undefined,
      line: 3,
    });
    expect(credentials.byToken(OTHER)).toEqual({
      name: "billing",
      scope: "read",
      rate: { perSecond: 10, burst: 20 },
      line: 4,
    });
    expect(credentials.byToken(`${SECRET}x`)).toBeUndefined();
    expect(credentials.byToken(digest)).toBeUndefined();
    expect(
      credentials
        .byCertificate({
          uris: ["spiffe://prod/ns/billing/sa/api#frag"],
          dnsNames: ["edge.internal"],
        })
        .map((g) => g.name),
    ).toEqual(["mesh", "edge"]);
    expect(
      credentials.byCertificate({ uris: ["spiffe://prod/ns/billing/sa"], dnsNames: [] }),
    ).toEqual([]);
  });

  it.each([
    ["billing write", "line 1: expected NAME SCOPE TOKEN [RATE], found 2 fields"],
    [
      `billing write ${SECRET} 10/s extra`,
      "line 1: expected NAME SCOPE TOKEN [RATE], found 5 fields",
    ],
    [`bill/ing write ${SECRET}`, "line 1: NAME must be"],
    [`anonymous write ${SECRET}`, 'and not "anonymous"'],
    [`billing owner ${SECRET}`, "line 1: SCOPE must be one of read, write, admin"],
    ["billing write short-token", "line 1: TOKEN must be at least 16 characters"],
    [`billing write ${SECRET}é`, "line 1: TOKEN must be at least 16 characters"],
    ["billing write sha256:abc", "line 1: sha256: must be followed by 64 hex digits"],
    ["billing write cert:", "line 1: cert: needs a URI or DNS SAN"],
    [`billing write ${SECRET} fast`, "line 1: RATE must be a rate such as 500/s,burst=1000"],
    [`# ok\nbilling write ${SECRET}\nother read ${SECRET}`, "line 3: the same token as line 2"],
    [
      `billing write ${SECRET}\nother read sha256:${createHash("sha256").update(SECRET).digest("hex")}`,
      "line 2: the same token as line 1",
    ],
    [
      "a read cert:x.internal\nb admin cert:x.internal",
      "line 2: the same certificate SAN as line 1",
    ],
  ])("refuses %j, naming the line and why", (text, message) => {
    const error = parseError(text);
    expect(error.message).toContain(message);
    // Never the secret, not even part of it.
    expect(error.message).not.toContain(SECRET.slice(0, 8));
    expect(error.message).not.toContain("short-token");
  });

  it("orders scopes read < write < admin", () => {
    expect(scopeAllows("admin", "write")).toBe(true);
    expect(scopeAllows("write", "read")).toBe(true);
    expect(scopeAllows("write", "admin")).toBe(false);
    expect(scopeAllows("read", "write")).toBe(false);
  });
});

describe("a client certificate's subject alternative names", () => {
  it("reads URI and DNS names and nothing else", () => {
    expect(
      parseSubjectAltName(
        "DNS:api.internal, URI:spiffe://prod/ns/billing/sa/api, IP Address:127.0.0.1, email:a@b",
      ),
    ).toEqual({ uris: ["spiffe://prod/ns/billing/sa/api"], dnsNames: ["api.internal"] });
  });

  it("reads a quoted name as one name, so a comma cannot smuggle in a second", () => {
    expect(parseSubjectAltName('URI:"spiffe://x/a, DNS:admin.internal", DNS:b.internal')).toEqual({
      uris: ["spiffe://x/a, DNS:admin.internal"],
      dnsNames: ["b.internal"],
    });
    expect(parseSubjectAltName(undefined)).toEqual({ uris: [], dnsNames: [] });
  });
});
