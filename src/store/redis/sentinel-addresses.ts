/** Where one Redis Sentinel listens. */
export interface SentinelAddress {
  readonly host: string;
  readonly port: number;
}

const ADDRESS = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

/**
 * Reads "host:port,host:port" (each host a name, an IPv4 address or an
 * [IPv6] address, each port 1-65535, spaces around entries ignored);
 * undefined if any entry is not one. The one grammar of REDIS_SENTINELS,
 * for the settings' check and the client alike.
 */
export function parseSentinelAddresses(raw: string): SentinelAddress[] | undefined {
  const addresses: SentinelAddress[] = [];
  for (const entry of raw.split(",")) {
    const match = ADDRESS.exec(entry.trim());
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) return undefined;
    addresses.push({ host: (match[1] ?? match[2]) as string, port });
  }
  return addresses;
}
