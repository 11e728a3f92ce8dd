/**
 * Orders strings by the bytes of their UTF-8 encoding, which is the order
 * Redis and every other language's byte comparison uses. JavaScript's own `<`
 * compares UTF-16 code units and disagrees for characters above U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}
