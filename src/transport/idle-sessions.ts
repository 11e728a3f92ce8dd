import type http2 from "node:http2";

/** What IdleSessions knows of one HTTP/2 connection. */
interface SessionState {
  streams: number;
  idleSince: number;
  /** Sent GOAWAY for idling: destroyed at the next check if still open. */
  goawaySent: boolean;
}

/**
 * IDLE_TIMEOUT for HTTP/2: closes a connection gracefully (GOAWAY, then
 * the socket once nothing is in flight) when no stream has been open on it
 * for `idleTimeoutMs`, so clients that open connections and leave them
 * unused cannot hold server memory forever. A stream in flight is never
 * cut: only connections with none are closed. Node's own session timeout
 * would not do: it counts any frame (a client's keepalive PINGs) as
 * activity, and destroys rather than closes.
 *
 * One check runs every quarter of the timeout (at most every 5 s), while
 * there are connections to watch; a connection is closed between the
 * timeout and the timeout plus that period.
 *
 * A connection still open one check after its GOAWAY, with no stream
 * open, is destroyed: a client that stopped in the middle of a header
 * block (HEADERS without END_HEADERS, no CONTINUATION) holds a stream
 * that nghttp2 counts and Node never surfaces, so the graceful close
 * would wait for it forever. No call is in flight on it to be lost.
 */
export class IdleSessions {
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  private timer: NodeJS.Timeout | undefined;

  /** @param idleTimeoutMs 0 disables the timeout. */
  constructor(private readonly idleTimeoutMs: number) {}

  /** Watches a new connection until it closes. */
  add(session: http2.ServerHttp2Session): void {
    if (this.idleTimeoutMs === 0) return;
    const state: SessionState = { streams: 0, idleSince: Date.now(), goawaySent: false };
    this.sessions.set(session, state);
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      state.streams++;
      // Emitted once: a plain listener, without once()'s wrapper per stream.
      stream.on("close", () => {
        state.streams--;
        if (state.streams === 0) state.idleSince = Date.now();
      });
    });
    session.once("close", () => {
      this.sessions.delete(session);
      if (this.sessions.size === 0) this.stop();
    });
    if (this.timer === undefined) {
      const period = Math.min(5000, Math.max(10, Math.floor(this.idleTimeoutMs / 4)));
      this.timer = setInterval(() => this.closeIdle(), period);
      // Connections keep the process alive, not this check.
      this.timer.unref();
    }
  }

  /** Stops checking (at shutdown, which closes every connection itself). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const [session, state] of this.sessions) {
      if (state.streams > 0) continue;
      if (state.goawaySent) {
        if (!session.destroyed) session.destroy();
      } else if (now - state.idleSince >= this.idleTimeoutMs && !session.closed) {
        session.close();
        state.goawaySent = true;
      }
    }
  }
}
