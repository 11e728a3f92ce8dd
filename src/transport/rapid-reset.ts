import http2 from "node:http2";
import { LogThrottle } from "../observability/log-throttle.js";
import type { Logger } from "../observability/logger.js";
import type { Rate } from "../pipeline/call.js";
import { refill, type Tokens } from "../pipeline/rate.js";

/**
 * Streams one connection may have reset before they are served: 100 at
 * once, and 10 a second on average after that.
 */
const RESETS_BEFORE_SERVED: Rate = { perSecond: 10, burst: 100 };
/** How long a new HTTP/2 connection waits, unread, when its address had a connection cut off... */
const HOLD_MS = 250;
/** ...less than this long ago. */
const HELD_ADDRESS_MS = 5000;
/** The most addresses remembered (the least recently cut off are forgotten first). */
const MAX_HELD_ADDRESSES = 10_000;
/** How often, at most, connections cut off are logged: an attack must not flood the log. */
const CUT_LOG_INTERVAL_MS = 10_000;

/** A stream waiting to be served, and what came with it. */
interface Pending {
  readonly stream: http2.ServerHttp2Stream;
  readonly headers: http2.IncomingHttpHeaders;
  readonly rest: unknown[];
}

/** What is left of one connection's budget of streams reset before they are served. */
interface Budget extends Tokens {
  /** The client's address, held once the connection is cut off (see holdOf). */
  readonly address: string;
}

/**
 * The port's defence against rapid reset (CVE-2023-44487): a client that
 * opens streams and resets them at once (HEADERS + RST_STREAM pairs, as
 * fast as TCP carries them), so that the server starts work for calls
 * nobody waits for.
 *
 * nghttp2's own limit (a burst of 1000 resets per connection, then 33 a
 * second; Node >= 20.8) comes late. Node hands a stream to JavaScript as
 * soon as its HEADERS are read, and the fast path answered each of those
 * streams (decoding its call and failing it) before the RST_STREAM behind
 * it was read: about half a millisecond each, 0.5-0.9 s for a thousand.
 * Then Node 20 (nghttp2 1.61) stops reading the connection without closing
 * it (until IDLE_TIMEOUT closes it), and Node 24 (nghttp2 1.70) destroys
 * it: a client that reconnects at once starts again, and other clients'
 * calls waited hundreds of ms behind each of its connections.
 *
 * So, here:
 * - Each new stream is handed to its handler on the next turn of the event
 *   loop (one setImmediate for all the streams of a turn: once Node has
 *   processed what it read with their HEADERS). A stream whose RST_STREAM came in with them is
 *   closed by then and costs no handler work at all. (The end of an
 *   empty body, which Node announces meanwhile, is passed on to the
 *   handler; request trailers, which nothing here reads, are not.)
 * - Streams reset before they are served are counted per connection in a
 *   token bucket (RESETS_BEFORE_SERVED). Past it, the connection is destroyed
 *   at once (GOAWAY ENHANCE_YOUR_CALM, then the socket): Node hands none of
 *   the streams behind it to JavaScript, and the socket closes rather than
 *   waiting for IDLE_TIMEOUT.
 * - New HTTP/2 connections from an address whose connection was cut off
 *   less than HELD_ADDRESS_MS ago wait HOLD_MS, unread, before they are
 *   served (see holdOf). A client that reconnects as soon as it is cut off
 *   gets a connection a few times a second instead of as fast as the
 *   server can cut them, each costing the server what it read before the
 *   cut. Clients sharing the address (behind NAT or a proxy) wait too, for
 *   new connections only; connections already open are never held.
 *
 * A well-behaved client resets a stream the server has not even read only
 * when it gives up on a call queued behind a server stalled for longer
 * than the call's deadline; a hundred of those at once on one connection
 * means its calls fail anyway (and nghttp2 would cut it at a thousand).
 */
export class RapidResetGuard {
  /** Each open connection's budget. */
  private readonly budgets = new WeakMap<http2.Http2Session, Budget>();
  /** Streams handed off since the last turn of the event loop, served on the next (see handOff). */
  private pending: Pending[] = [];
  private readonly held = new Map<string, number>();
  private readonly cutLog = new LogThrottle(CUT_LOG_INTERVAL_MS);
  /**
   * The "aborted" listener of a stream not served yet: one function for
   * every stream (it is called with the stream as `this`), taken off once
   * the stream is served.
   */
  private readonly onUnservedAbort: (this: http2.ServerHttp2Stream) => void;

  /**
   * @param logger where connections cut off are reported (warn, counted, without the address)
   * @param serve what a stream handed off is given to, with what came with it
   */
  constructor(
    private readonly logger: Logger,
    private readonly serve: (
      stream: http2.ServerHttp2Stream,
      headers: http2.IncomingHttpHeaders,
      rest: unknown[],
    ) => void,
  ) {
    const guard = this;
    this.onUnservedAbort = function () {
      const session = this.session;
      const budget = session && guard.budgets.get(session);
      if (session && budget) guard.resetBeforeServed(session, budget);
    };
  }

  /**
   * Counts the streams of a new connection that are reset before they are
   * served; call it on the server's "session" event, before any stream.
   */
  watch(session: http2.ServerHttp2Session): void {
    const budget: Budget = {
      tokens: RESETS_BEFORE_SERVED.burst,
      at: performance.now(),
      address: session.socket?.remoteAddress ?? "",
    };
    this.budgets.set(session, budget);
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      // Node announces a stream on the tick after its HEADERS; when it read
      // the RST_STREAM in the same call, the stream is closed already.
      if (stream.closed || stream.destroyed) this.resetBeforeServed(session, budget);
    });
  }

  /**
   * Serves `stream` (see the constructor's `serve`) on the next turn of the
   * event loop unless it is closed by then. The streams handed off during
   * one turn are served together, by one setImmediate, in the order they
   * came.
   */
  handOff(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rest: unknown[],
  ): void {
    // Until it is served nothing else listens: a reset with an error code,
    // or its connection's error, makes Node emit "error" on it (maybe on a
    // later tick), which must not reach the process.
    stream.on("error", ignore);
    // Reset before Node even announced it (see watch): nothing to wait for.
    if (stream.closed || stream.destroyed) return;
    // "aborted", not "close": Node emits it as nghttp2 processes the
    // RST_STREAM, so a connection over its budget is destroyed before the
    // frames behind it reach JavaScript; "close" comes a tick later.
    stream.on("aborted", this.onUnservedAbort);
    if (this.pending.length === 0) setImmediate(this.servePending);
    this.pending.push({ stream, headers, rest });
  }

  private readonly servePending = (): void => {
    const pending = this.pending;
    this.pending = [];
    for (const { stream, headers, rest } of pending) {
      stream.off("aborted", this.onUnservedAbort);
      if (stream.closed || stream.destroyed) continue;
      if (!stream.readableEnded) {
        this.serve(stream, headers, rest);
        continue;
      }
      // Node ends an empty request body itself as soon as its END_STREAM is
      // read: "end" came before the handler listened, so it gets it now.
      const before = new Set(stream.rawListeners("end"));
      this.serve(stream, headers, rest);
      for (const listener of stream.rawListeners("end")) {
        if (!before.has(listener)) listener.call(stream);
      }
    }
  };

  /**
   * How long a new HTTP/2 connection from `address` is to wait, unread,
   * before it is served: HOLD_MS while the address had a connection cut
   * off less than HELD_ADDRESS_MS ago, else 0.
   */
  holdOf(address: string): number {
    const until = this.held.get(address);
    if (until === undefined) return 0;
    if (until > performance.now()) return HOLD_MS;
    this.held.delete(address);
    return 0;
  }

  private resetBeforeServed(session: http2.Http2Session, budget: Budget): void {
    // A connection being destroyed closes its streams: not the client's doing.
    if (session.destroyed || session.closed) return;
    const now = performance.now();
    refill(budget, RESETS_BEFORE_SERVED, now);
    budget.tokens -= 1;
    if (budget.tokens >= 0) return;
    session.destroy(
      new Error("rapid reset: streams reset before they were served"),
      http2.constants.NGHTTP2_ENHANCE_YOUR_CALM,
    );
    // Deleted first, so the address moves to the end of the map's order.
    this.held.delete(budget.address);
    this.held.set(budget.address, now + HELD_ADDRESS_MS);
    if (this.held.size > MAX_HELD_ADDRESSES) {
      for (const address of this.held.keys()) {
        this.held.delete(address);
        break;
      }
    }
    const cut = this.cutLog.count();
    if (cut !== undefined) {
      this.logger.warn(
        { cut, burst: RESETS_BEFORE_SERVED.burst },
        "cut off HTTP/2 connections that reset streams as fast as they opened them (rapid reset)",
      );
    }
  }
}

function ignore(): void {}
