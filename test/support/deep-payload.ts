import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * extra_payloads of an exact depth, counted as the server counts it (see
 * MAX_PAYLOAD_DEPTH): the Struct is level 1, each Value one more, each
 * Struct or ListValue inside a Value one more.
 */

/** Objects nested in objects: `{}` is 1 level, `{"a": 1}` 2, `{"a": {}}` 3, `{"a": {"a": 1}}` 4. */
export function nestedObjects(depth: number): JsonObject {
  return nested<JsonObject>(depth, (inner) => ({ a: inner }), {});
}

/** Arrays nested under one member: `{"a": []}` is 3 levels, `{"a": [1]}` 4, `{"a": [[]]}` 5. */
export function nestedLists(depth: number): JsonObject {
  if (depth < 3) return nestedObjects(depth);
  return { a: nested(depth - 2, (inner) => [inner], []) as JsonValue };
}

/**
 * A value of `levels` levels below its container, built from the inside
 * out: wrap adds two levels (a Value and the Struct or ListValue it holds),
 * a leaf number one, an empty container (`empty`) counts as the last level.
 */
function nested<T extends JsonValue>(levels: number, wrap: (inner: JsonValue) => T, empty: T): T {
  // The innermost container is empty at an odd depth and holds a number at an even one.
  let value: JsonValue = levels % 2 === 1 ? empty : wrap(1);
  for (let level = levels % 2 === 1 ? 1 : 2; level < levels; level += 2) value = wrap(value);
  return value as T;
}
