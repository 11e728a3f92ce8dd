import type { ConnectionOptions } from "node:tls";
import { Redis } from "ioredis";
import type { SentinelAddress } from "./sentinel-addresses.js";

/** How a connection to a sentinel is made, as the client's own are. */
export interface SentinelConnection {
  readonly username?: string;
  /** Never logged. */
  readonly password?: string;
  /** Node's TLS options when the sentinels serve TLS. */
  readonly tls?: ConnectionOptions;
  readonly connectTimeout: number;
  readonly commandTimeout: number;
}

/**
 * Why no sentinel named the primary, asked of each sentinel directly:
 * when a whole round of sentinels fails, ioredis reports only the reply
 * its sentinel client got ("Connection is closed."), while the cause (an
 * untrusted certificate, a client certificate the sentinel asked for, a
 * refused password, an unknown group) went to that client's own error
 * handler, which ignores it. Each sentinel is asked at once, with
 * `connection` (TLS, credentials, timeouts, as the real client's
 * sentinel connections have them); the first one in order that gives a
 * cause names it, as `describe` words it. Undefined when every sentinel
 * answers and names a primary (the failure was elsewhere, or is over).
 */
export async function probeSentinels(
  sentinels: readonly SentinelAddress[],
  group: string,
  connection: SentinelConnection,
  describe: (error: Error) => string,
): Promise<string | undefined> {
  const causes = await Promise.all(
    sentinels.map((sentinel) => probeSentinel(sentinel, group, connection, describe)),
  );
  const index = causes.findIndex((cause) => cause !== undefined);
  const sentinel = sentinels[index];
  return sentinel && `sentinel ${sentinel.host}:${sentinel.port}: ${causes[index]}`;
}

/** One sentinel's answer for the group, or why it gave none. */
async function probeSentinel(
  sentinel: SentinelAddress,
  group: string,
  connection: SentinelConnection,
  describe: (error: Error) => string,
): Promise<string | undefined> {
  const client = new Redis({
    ...connection,
    host: sentinel.host,
    port: sentinel.port,
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    disableClientInfo: true,
  });
  // The connection's own error (a TLS alert, WRONGPASS) comes here; the
  // command only learns that the connection closed.
  let first: Error | undefined;
  client.on("error", (error: Error) => {
    first ??= error;
  });
  try {
    await client.connect();
    const primary = await client.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", group);
    return primary === null ? `knows no master group named ${JSON.stringify(group)}` : undefined;
  } catch (error) {
    return describe(first ?? (error as Error));
  } finally {
    client.disconnect();
  }
}
