import { TLSSocket } from "node:tls";
import type { PeerCertificate } from "../pipeline/call.js";

/**
 * The identities of a connection's client certificate: its URI and DNS
 * subject alternative names, only when the connection is TLS and the
 * certificate was verified against the client CA; else undefined. The
 * subject's CN is not read: identities come from SANs alone, as SPIFFE and
 * RFC 6125 ask.
 */
export function peerCertificateOf(socket: unknown): PeerCertificate | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const certificate = socket.getPeerX509Certificate();
  if (!certificate) return undefined;
  return parseSubjectAltName(certificate.subjectAltName);
}

/**
 * Reads Node's rendering of the subjectAltName extension:
 * `DNS:a.example, URI:spiffe://x/y`, where a value holding a comma, quote
 * or other special character is written as a JSON string
 * (`URI:"spiffe://x/a,b"`), so a crafted name cannot pass for two.
 */
export function parseSubjectAltName(text: string | undefined): PeerCertificate {
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  for (const match of (text ?? "").matchAll(entry)) {
    const raw = match[2] as string;
    const value = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
    if (match[1] === "URI") uris.push(value);
    else if (match[1] === "DNS") dnsNames.push(value);
  }
  return { uris, dnsNames };
}
