import { Redis } from "ioredis";
import type { SentinelAddress } from "./sentinel-addresses.js";
import type { SentinelConnection } from "./sentinel-probe.js";

/** What followPrimarySwitches needs besides the client. */
export interface PrimarySwitchOptions {
  /** Every sentinel: each announces a failover once it has switched itself. */
  readonly sentinels: readonly SentinelAddress[];
  /** The master group the client follows. */
  readonly group: string;
  /** How to connect to a sentinel (TLS, credentials, timeouts). */
  readonly connection: SentinelConnection;
  /** How long to wait before reconnecting to a sentinel, by attempt. */
  readonly reconnectDelay: (attempt: number) => number;
}

/**
 * Makes `client`, a Sentinel-managed client, leave a primary that the
 * sentinels announce they have replaced (+switch-master on each sentinel),
 * so that it asks them again and writes go to the new primary even when
 * the old one stays up and never closes the connection (SENTINEL FAILOVER
 * leaves it a writable primary for about 10 s, until a sentinel makes it a
 * replica). Replaces ioredis's own failover detector (`failoverDetector`),
 * which is unsafe: it stays subscribed after its connection dies and, on
 * the announcement, closes the connector whatever the client is doing; when
 * that lands while a reconnection is still asking a sentinel for the
 * primary (after a SIGKILL of the primary, the usual case), the attempt
 * fails "Connection is closed." and ioredis ends the client for good
 * (ioredis 6.0.0). It also dropped a connection already on the new primary
 * whenever another sentinel announced the same failover later, a second
 * outage seconds after the first. Here only an established connection to
 * another node than the one announced is dropped; a connection being made
 * asks the sentinels anyway. The sentinels' connections close when the
 * client ends.
 */
export function followPrimarySwitches(client: Redis, options: PrimarySwitchOptions): void {
  // No command timeout: a subscription waits for a stuck sentinel rather
  // than giving up on it for good.
  const { commandTimeout: _, ...connection } = options.connection;
  const watchers = options.sentinels.map(({ host, port }) => {
    const watcher = new Redis({
      ...connection,
      host,
      port,
      retryStrategy: options.reconnectDelay,
      // Subscribed again after every reconnection; the subscription waits
      // for one rather than failing while a sentinel is away.
      maxRetriesPerRequest: null,
      disableClientInfo: true,
      connectionName: "sessionstore-failover-watch",
    });
    // A sentinel away is no failure of the client's: it has the others.
    watcher.on("error", () => {});
    watcher.subscribe("+switch-master").catch(() => {});
    watcher.on("message", (channel: string, message: string) => {
      if (channel !== "+switch-master") return;
      // "<group> <old ip> <old port> <new ip> <new port>"
      const [group, , , newHost, newPort] = message.split(" ");
      if (group !== options.group) return;
      if (client.status !== "ready" && client.status !== "connect") return;
      if (connectedTo(client, newHost, Number(newPort))) return;
      client.disconnect(true);
    });
    return watcher;
  });
  client.once("end", () => {
    for (const watcher of watchers) watcher.disconnect();
  });
}

/** Whether `client`'s connection goes to host:port (IPv4 as the sentinels name it). */
function connectedTo(client: Redis, host: string | undefined, port: number): boolean {
  const { remoteAddress, remotePort } = client.stream ?? {};
  return remoteAddress?.replace(/^::ffff:/, "") === host && remotePort === port;
}
