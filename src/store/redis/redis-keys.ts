/**
 * The Redis key layout. For a user U and a prefix P:
 *
 *   P:{tag(U)}:h   a hash: session id -> the session's record (redis-record.ts)
 *   P:{tag(U)}:e   a sorted set of the same ids scored by storage expiry
 *                  (Unix ms): pruning, eviction, the keys' TTL, counting
 *   P:{tag(U)}:l   a sorted set of the same ids, all scored 0: ZRANGE BYLEX
 *                  pages through it in byte-wise order in O(log n + page)
 *   P:{tag(U)}:x   a list of the user's session events (lua/common.lua's
 *                  emit), kept for EVENT_RETENTION and EVENT_RETENTION_COUNT;
 *                  its name is also the sharded pub/sub channel (SPUBLISH)
 *                  that tells watchers of new events, in the user's slot
 *
 * and P:{tag(U)}:never-written, which nothing writes: a script reads it to
 * learn whether it may create the user's keys while a Cluster slot
 * migrates (see can_create_keys in lua/common.lua).
 *
 * One hash rather than one key per session so that DeleteByUser can make
 * every session of a user unreadable at once, in O(1), by UNLINKing three
 * keys (see lua/delete_by_user.lua). All three expire with the user's
 * longest-lived session; the event log expires EVENT_RETENTION after
 * its last event, so watchers still learn of the deletions.
 *
 * The braces are a Redis Cluster hash tag: every key of one user hashes to
 * the same slot, so each operation's script touches one slot. `tag(U)` escapes
 * `%`, `{` and `}`, so the tag ends at the first `}` and the mapping from
 * user id to keys is injective whatever the id contains; session ids are
 * hash fields and set members, which need no escaping.
 *
 * Layout 0.1 (`P:{tag(U)}:s:<session id>` strings and a `P:{tag(U)}:i`
 * index) used other names, so its keys are never misread: they are left to
 * expire on their own.
 */
export interface UserKeys {
  /** The hash of the user's session records. */
  readonly sessions: string;
  /** The user's session ids scored by storage expiry. */
  readonly byExpiry: string;
  /** The user's session ids in byte-wise order (all scored 0). */
  readonly byId: string;
  /** The log of the user's session events, and the channel announcing them. */
  readonly events: string;
}

/**
 * Builds the keys of one user. The prefix must not contain braces (config
 * validation guarantees it), or it would move the hash tag.
 */
export function userKeys(prefix: string, userId: string): UserKeys {
  const base = `${prefix}:{${escapeTag(userId)}}:`;
  return { sessions: `${base}h`, byExpiry: `${base}e`, byId: `${base}l`, events: `${base}x` };
}

/** The characters escapeTag escapes. */
const TAG_SPECIAL = /[%{}]/;

function escapeTag(userId: string): string {
  // Most ids have none of them: testing is cheaper than replacing nothing.
  if (!TAG_SPECIAL.test(userId)) return userId;
  return userId.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
