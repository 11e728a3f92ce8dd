import net from "node:net";

/** Whether nothing listens on 127.0.0.1:port right now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}

/**
 * A port that was free a moment ago, for processes that cannot be told to
 * pick their own (redis-server). Callers retry on the rare collision.
 * With `busPort`, port + 10000 (a cluster node's bus port) is free too.
 */
export async function freePort({ busPort = false } = {}): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const probe = net.createServer();
      probe.once("error", reject);
      probe.listen(0, "127.0.0.1", () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    if (!busPort) return port;
    if (port + 10000 <= 65535 && (await isPortFree(port + 10000))) return port;
  }
  throw new Error("no free port found");
}

/**
 * Starts something on `count` distinct free ports, again on fresh ports
 * whenever `start` resolves undefined (its port was taken): a port free when
 * chosen can be bound by another process before `start` binds it.
 */
export async function onFreePorts<T>(
  count: number,
  start: (ports: number[]) => Promise<T | undefined>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    while (ports.length < count) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    const started = await start(ports);
    if (started !== undefined) return started;
    if (attempt === 5) throw new Error(`another process took the chosen ports ${attempt} times`);
  }
}
