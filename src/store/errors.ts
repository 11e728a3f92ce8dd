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
  override readonly name: string = "StoreUnavailableError";
  constructor(cause: unknown) {
    super("session storage is unavailable", { cause });
  }
}

/**
 * A write was made on the primary, but fewer replicas than required
 * acknowledged it in time: it may be kept, or lost if the primary fails
 * before the replicas catch up. The caller should read the session again,
 * or retry conditionally on the version it knows.
 */
export class NotReplicatedError extends StoreUnavailableError {
  override readonly name = "NotReplicatedError";
  constructor(
    readonly acknowledged: number,
    readonly required: number,
    /** Why no count came back, when WAIT itself failed (the connection closed, the primary was demoted). */
    cause?: unknown,
  ) {
    super(cause);
    this.message = `the write may have been applied: ${acknowledged} of ${required} replicas acknowledged it in time`;
  }
}

/**
 * A refresh presented a refresh token id that is neither the session's
 * current one nor its previous one within the grace: the session (or, with
 * revoke-all, every session of the user) was deleted in the same step.
 */
export class RefreshTokenReusedError extends Error {
  override readonly name = "RefreshTokenReusedError";
  constructor() {
    super("refresh token was already used");
  }
}

/**
 * A refresh found a session stored before refresh tokens were recorded
 * (layout 1 records): its current refresh token id is not known to the
 * store, so the presented one can be neither accepted nor called reused.
 */
export class RefreshStateMissingError extends Error {
  override readonly name = "RefreshStateMissingError";
  constructor() {
    super("session has no recorded refresh token");
  }
}

/** The store was closed while a call (a watch stream) was using it. */
export class StoreClosedError extends StoreUnavailableError {
  override readonly name = "StoreClosedError";
  constructor() {
    super(undefined);
    this.message = "session storage was closed";
  }
}
