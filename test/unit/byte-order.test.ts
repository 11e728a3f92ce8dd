import { describe, expect, it } from "vitest";
import { compareUtf8 } from "../../src/store/byte-order.js";

describe("compareUtf8", () => {
  it("orders like the bytes of the UTF-8 encodings", () => {
    const strings = [
      "",
      "a",
      "aa",
      "b",
      "B",
      "é",
      "\uFFFD",
      "\uE000",
      "😀",
      "😁",
      "a😀",
      "a\uFFFF",
      "~",
    ];
    const byBytes = [...strings].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    expect([...strings].sort(compareUtf8)).toEqual(byBytes);
    for (const x of strings) {
      for (const y of strings) {
        expect(Math.sign(compareUtf8(x, y)), `${x} vs ${y}`).toBe(
          Math.sign(Buffer.compare(Buffer.from(x), Buffer.from(y))),
        );
      }
    }
  });
});
