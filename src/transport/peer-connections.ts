import type { Duplex } from "node:stream";

/**
 * MAX_CONNECTIONS_PER_PEER: counts the open connections of each peer
 * address and says whether one more may open. 0 is unlimited: behind a load
 * balancer or proxy every connection comes from its address, so a cap there
 * would cap the whole service.
 */
export class PeerConnections {
  private readonly open = new Map<string, number>();

  constructor(readonly max: number) {}

  /**
   * Counts a new connection from `address` unless the peer is at the cap;
   * returns whether it was counted (call `closed` when it closes).
   */
  tryOpen(address: string): boolean {
    if (this.max === 0) return true;
    const count = this.open.get(address) ?? 0;
    if (count >= this.max) return false;
    this.open.set(address, count + 1);
    return true;
  }

  /** Forgets a connection `tryOpen` counted; peers with none left take no memory. */
  closed(address: string): void {
    if (this.max === 0) return;
    const count = (this.open.get(address) ?? 1) - 1;
    if (count <= 0) this.open.delete(address);
    else this.open.set(address, count);
  }

  /** Peers with at least one open connection (memory stays bounded by open connections). */
  get peers(): number {
    return this.open.size;
  }
}

/** HTTP/2's ENHANCE_YOUR_CALM error code: the peer is generating excessive load. */
const ENHANCE_YOUR_CALM = 0x0b;
/** How long a refused client may take to go away before its socket is destroyed. */
const REFUSED_LINGER_MS = 5000;

/**
 * Refuses a connection in its own protocol, so the client can tell why:
 * HTTP/2 gets an empty SETTINGS frame (the server preface) then
 * GOAWAY(ENHANCE_YOUR_CALM) with `reason` as its debug data; HTTP/1.1 gets
 * a 429 with `connection: close` and `reason` as the body. The frames are
 * written by hand because the connection never reaches a server. The
 * socket's write side ends at once; what the client still sends is read
 * and dropped (closing with unread data would reset the connection and
 * could lose the answer), until it closes or REFUSED_LINGER_MS passes.
 */
export function refuseConnection(socket: Duplex, isHttp2: boolean, reason: string): void {
  const text = Buffer.from(reason, "utf8");
  if (isHttp2) {
    const settings = frameHeader(0, 0x4, 0);
    const goaway = Buffer.concat([frameHeader(8 + text.length, 0x7, 0), Buffer.alloc(8), text]);
    goaway.writeUInt32BE(ENHANCE_YOUR_CALM, 9 + 4);
    socket.end(Buffer.concat([settings, goaway]));
  } else {
    const body = Buffer.concat([text, Buffer.from("\n")]);
    socket.end(
      Buffer.concat([
        Buffer.from(
          "HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\n" +
            `content-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\n\r\n`,
          "latin1",
        ),
        body,
      ]),
    );
  }
  socket.on("error", () => {});
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
  linger.unref();
  socket.once("close", () => clearTimeout(linger));
}

/** An HTTP/2 frame header: 24-bit length, type, flags, stream 0. */
function frameHeader(length: number, type: number, flags: number): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header[4] = flags;
  return header;
}
