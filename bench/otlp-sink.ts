import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An OTLP/HTTP receiver that reads and discards what it is sent, answering
 * 200: the collector of the services measured with tracing on, so their
 * exports cost what they cost against a real endpoint, without a collector
 * to install. Counts the spans' export requests, to show they came.
 */
export async function startOtlpSink(): Promise<{
  readonly endpoint: string;
  readonly exports: number;
  stop(): Promise<void>;
}> {
  let exports = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url === "/v1/traces") exports++;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get exports() {
      return exports;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
