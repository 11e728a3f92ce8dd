import type { CallOptions, Client } from "@connectrpc/connect";
import type { Session, SessionStoreService } from "./gen/sessionstore/v1/session_store_pb.js";

/** Options of {@link listSessions}: the page size and the options of each ListByUser call. */
export interface ListSessionsOptions extends CallOptions {
  /** Sessions per ListByUser call, 1 to 1000; 0 or absent: the server's default (100). */
  readonly pageSize?: number | undefined;
}

/**
 * Every session of a user, ordered by id, as an async iterator that calls
 * ListByUser page after page until the last. Each call gets `options`
 * (e.g. `timeoutMs` applies per page). A session written while the
 * iteration runs may or may not be seen, as with the pages themselves.
 */
export async function* listSessions(
  client: Client<typeof SessionStoreService>,
  userId: string,
  options: ListSessionsOptions = {},
): AsyncGenerator<Session> {
  const { pageSize = 0, ...callOptions } = options;
  let pageToken = "";
  do {
    const page = await client.listByUser({ userId, pageSize, pageToken }, callOptions);
    yield* page.sessions;
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
}
