/**
 * Orders strings by the bytes of their UTF-8 encoding, which is the order
 * Redis and every other language's byte comparison uses. JavaScript's own `<`
 * compares UTF-16 code units and disagrees for characters above U+FFFF.
 *
 * UTF-8 byte order is code point order, so this compares code units and
 * corrects the one case where they disagree, without encoding anything: it
 * runs inside sorts.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (U+D800-U+DFFF) starts a code point above U+FFFF, which
    // sorts after every code point a single unit can hold.
    const xHigh = x >= 0xd800 && x <= 0xdfff;
    const yHigh = y >= 0xd800 && y <= 0xdfff;
    if (xHigh !== yHigh) return xHigh ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}
