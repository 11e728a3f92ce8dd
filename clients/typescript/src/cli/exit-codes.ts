/**
 * sessionstore-ctl's exit codes, documented in the package README: what a
 * script branches on. A file without imports, so that --help and usage
 * errors load nothing of the clients.
 */
/** The exit codes, documented in the package README. */
export const EXIT = {
  ok: 0,
  /** Anything not listed below (INVALID_ARGUMENT, ABORTED, INTERNAL, a TLS failure, ...). */
  failed: 1,
  /** A usage or configuration error: bad arguments, an unreadable file; nothing was called. */
  usage: 2,
  /** NOT_FOUND, and `revoke` of a session that was not there. */
  notFound: 3,
  /** UNAUTHENTICATED or PERMISSION_DENIED. */
  denied: 4,
  /** UNAVAILABLE or DEADLINE_EXCEEDED, and `health` answering anything but SERVING. */
  unavailable: 5,
} as const;
