import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../../harness/wait-for.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

// The fault tests trust the proxy to do exactly what it is told; these
// check each fault against a plain echo server.

const cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function echoThroughProxy(): Promise<{ proxy: TcpProxy; client: net.Socket; got: Buffer[] }> {
  const echo = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
  cleanup.push(() => new Promise<void>((resolve) => echo.close(() => resolve())));
  const proxy = await startTcpProxy((echo.address() as net.AddressInfo).port);
  cleanup.push(() => proxy.close());
  const client = net.connect(proxy.port, "127.0.0.1");
  client.on("error", () => {});
  cleanup.push(() => {
    client.destroy();
  });
  const got: Buffer[] = [];
  client.on("data", (chunk: Buffer) => got.push(chunk));
  await new Promise((resolve) => client.once("connect", resolve));
  await waitFor("the proxy to see the connection", () => proxy.connections === 1);
  return { proxy, client, got };
}

const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString("utf8");

describe("the fault tests' TCP proxy", () => {
  it("forwards both ways, in order, with the latency it is given", async () => {
    const { proxy, client, got } = await echoThroughProxy();
    client.write("a");
    await waitFor("the echo", () => text(got) === "a");
    proxy.setLatency(100);
    const sent = Date.now();
    client.write("b");
    client.write("c");
    await waitFor("the delayed echo", () => text(got) === "abc");
    // 100 ms on the way there and 100 ms on the way back.
    expect(Date.now() - sent).toBeGreaterThanOrEqual(195);
  });

  it("stalls: accepts bytes, forwards none, then delivers them in order on resume", async () => {
    const { proxy, client, got } = await echoThroughProxy();
    proxy.stall();
    client.write("held-");
    client.write("back");
    // The client's writes complete: the proxy accepted the bytes.
    await new Promise<void>((resolve) => client.write("", () => resolve()));
    await waitFor("the bytes to reach the proxy", () => client.bytesWritten === 9);
    expect(text(got)).toBe("");
    proxy.resume();
    await waitFor("the held bytes", () => text(got) === "held-back");
  });

  it("resets every connection (the client sees ECONNRESET) and cuts them (a clean end)", async () => {
    const first = await echoThroughProxy();
    const reset = new Promise<unknown>((resolve) => first.client.once("error", resolve));
    first.proxy.reset();
    expect((await reset) as { code?: string }).toMatchObject({ code: "ECONNRESET" });
    expect(first.proxy.connections).toBe(0);

    const second = await echoThroughProxy();
    const ended = new Promise((resolve) => second.client.once("end", resolve));
    second.proxy.cut();
    await ended;
    expect(second.proxy.connections).toBe(0);
  });
});
