/**
 * Domain errors of the storage port. They carry meaning, never data: messages
 * name no ids, so they are safe to log. The service maps each to a status
 * code in one place.
 */

/** The session to update or touch does not exist (or has expired). */
export class SessionNotFoundError extends Error {
  override readonly name = "SessionNotFoundError";
  constructor() {
    super("session not found");
  }
}

/** An insert-only write found the session already stored. */
export class SessionExistsError extends Error {
  override readonly name = "SessionExistsError";
  constructor() {
    super("session already exists");
  }
}

/** A conditional write or delete found another version stored. */
export class VersionMismatchError extends Error {
  override readonly name = "VersionMismatchError";
  constructor() {
    super("stored version differs from expected_version");
  }
}

/** The session's absolute end is not after the store's current time. */
export class ExpiresAtPassedError extends Error {
  override readonly name = "ExpiresAtPassedError";
  constructor() {
    super("expires_at is in the past");
  }
}

/**
 * The backend cannot serve the request right now (connection lost, timed
 * out, loading, failing over). Retrying later may succeed; callers must never
 * treat it as "no session".
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  constructor(cause: unknown) {
    super("session storage is unavailable", { cause });
  }
}
