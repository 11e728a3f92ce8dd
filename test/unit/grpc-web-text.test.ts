import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { describe, expect, it } from "vitest";
import { decodeBase64Body, encodeBase64Body } from "../../src/transport/grpc-web-text.js";

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const text = (...parts: string[]) =>
  createAsyncIterable(parts.map((p) => Buffer.from(p, "latin1")));

describe("decodeBase64Body", () => {
  it("decodes text split anywhere, including inside a 4-character group", async () => {
    const bytes = Buffer.from("the quick brown fox");
    const encoded = bytes.toString("base64");
    for (let cut = 0; cut <= encoded.length; cut++) {
      expect(
        await collect(decodeBase64Body(text(encoded.slice(0, cut), encoded.slice(cut)))),
      ).toEqual(bytes);
    }
  });

  it("decodes several separately padded segments, as senders may write them", async () => {
    const parts = ["A", "BC", "DEF", "G"].map((p) => Buffer.from(p).toString("base64"));
    expect(parts.join("")).toContain("=");
    expect((await collect(decodeBase64Body(text(parts.join(""))))).toString()).toBe("ABCDEFG");
    expect((await collect(decodeBase64Body(text(...parts)))).toString()).toBe("ABCDEFG");
  });
});

describe("encodeBase64Body", () => {
  it("writes one continuous base64 text, padded only at the end", async () => {
    const chunks = [Buffer.from("a"), Buffer.from("bcde"), Buffer.from("f"), Buffer.from("gh")];
    const out = (await collect(encodeBase64Body(createAsyncIterable(chunks)))).toString("latin1");
    expect(out).toBe(Buffer.from("abcdefgh").toString("base64"));
    expect(out.indexOf("=")).toBe(out.length - 1);
  });
});
