import net from "node:net";

/**
 * A TCP proxy between the service and Redis that the fault tests steer:
 * it can delay every chunk, stall (keep accepting bytes and forward none),
 * reset every connection (RST) or cut it (FIN), as a network would. It is
 * ours rather than a tool's so tests need nothing beyond Node, and every
 * fault starts and ends exactly when the test says.
 */
export interface TcpProxy {
  /** The loopback port clients connect to. */
  readonly port: number;
  /** redis://127.0.0.1:<port>, for REDIS_URL. */
  readonly url: string;
  /** Connections open through the proxy right now. */
  readonly connections: number;
  /** Delays every chunk, both ways, by `ms` from when it arrived (0: none). */
  setLatency(ms: number): void;
  /** Keeps accepting bytes both ways but forwards none until resume(). */
  stall(): void;
  /** Forwards what the stall held back, in order, and everything after it. */
  resume(): void;
  /** Resets every open connection (RST to both ends); held bytes are dropped. */
  reset(): void;
  /** Closes every open connection (FIN to both ends); held bytes are dropped. */
  cut(): void;
  /** Closes the proxy and every connection through it. */
  close(): Promise<void>;
}

/** One direction of one connection: chunks waiting for their time (or the stall's end). */
interface Pipe {
  readonly to: net.Socket;
  readonly queue: { readonly due: number; readonly data: Buffer }[];
  timer: NodeJS.Timeout | undefined;
}

/**
 * Listens on a free loopback port and forwards every connection to
 * 127.0.0.1:`targetPort`.
 */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let latencyMs = 0;
  let stalled = false;
  const open = new Set<{ client: net.Socket; upstream: net.Socket; pipes: Pipe[] }>();

  const pump = (pipe: Pipe) => {
    clearTimeout(pipe.timer);
    pipe.timer = undefined;
    if (stalled) return;
    const now = Date.now();
    while (pipe.queue.length > 0) {
      const head = pipe.queue[0] as Pipe["queue"][number];
      if (head.due > now) {
        pipe.timer = setTimeout(() => pump(pipe), head.due - now);
        return;
      }
      pipe.queue.shift();
      if (!pipe.to.destroyed) pipe.to.write(head.data);
    }
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    const toUpstream: Pipe = { to: upstream, queue: [], timer: undefined };
    const toClient: Pipe = { to: client, queue: [], timer: undefined };
    const connection = { client, upstream, pipes: [toUpstream, toClient] };
    open.add(connection);
    const forward = (pipe: Pipe) => (data: Buffer) => {
      pipe.queue.push({ due: Date.now() + latencyMs, data });
      // A chunk behind others waits for them; the pump's timer serves the head.
      if (pipe.queue.length === 1) pump(pipe);
    };
    client.on("data", forward(toUpstream));
    upstream.on("data", forward(toClient));
    // Either end closing (or failing) closes the other, as one connection would.
    const end = () => {
      if (!open.delete(connection)) return;
      for (const pipe of connection.pipes) clearTimeout(pipe.timer);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as net.AddressInfo).port;

  const closeAll = (how: "reset" | "cut") => {
    for (const connection of [...open]) {
      open.delete(connection);
      for (const pipe of connection.pipes) {
        clearTimeout(pipe.timer);
        pipe.queue.length = 0;
      }
      for (const socket of [connection.client, connection.upstream]) {
        if (how === "reset") socket.resetAndDestroy();
        else socket.destroy();
      }
    }
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get connections() {
      return open.size;
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      for (const connection of open) for (const pipe of connection.pipes) pump(pipe);
    },
    reset: () => closeAll("reset"),
    cut: () => closeAll("cut"),
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      closeAll("cut");
      await closed;
    },
  };
}
