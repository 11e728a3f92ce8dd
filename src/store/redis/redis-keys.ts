/**
 * The Redis key layout. For a user U and a prefix P:
 *
 *   P:{tag(U)}:s:<session id>   one string per session (its record)
 *   P:{tag(U)}:i                the user's index: a sorted set of session
 *                               ids scored by storage expiry (Unix ms)
 *
 * The braces are a Redis Cluster hash tag: every key of one user hashes to
 * the same slot, so each operation's script touches one slot. `tag(U)` escapes
 * `%`, `{` and `}`, so the tag ends at the first `}` and the mapping from
 * (user id, session id) to key is injective whatever the ids contain.
 */
export interface UserKeys {
  /** The user's index key. */
  readonly index: string;
  /** Everything before the session id in the user's session keys. */
  readonly sessionPrefix: string;
}

/**
 * Builds the keys of one user. The prefix must not contain braces (config
 * validation guarantees it), or it would move the hash tag.
 */
export function userKeys(prefix: string, userId: string): UserKeys {
  const base = `${prefix}:{${escapeTag(userId)}}:`;
  return { index: `${base}i`, sessionPrefix: `${base}s:` };
}

/** The key of one session. */
export function sessionKey(keys: UserKeys, sessionId: string): string {
  return keys.sessionPrefix + sessionId;
}

function escapeTag(userId: string): string {
  return userId.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
