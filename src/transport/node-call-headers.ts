import type { IncomingHttpHeaders } from "node:http";
import type { CallHeaders } from "../pipeline/call.js";

/** A call's headers over Node's header object, read only if a policy asks. */
export function nodeCallHeaders(headers: IncomingHttpHeaders): CallHeaders {
  return {
    get(name) {
      const value = headers[name];
      return Array.isArray(value) ? value.join(", ") : value;
    },
  };
}
