/**
 * The one HTTP/2 connection of the SDK's gRPC unary transport: opened on
 * the first call, opened again after it closes or the server sends GOAWAY,
 * and never what keeps the process alive while no call is in flight, as
 * connect-node's Http2SessionManager behaves with its defaults (no
 * keepalive PINGs, closed after 15 idle minutes).
 */
import http2 from "node:http2";

/** Options of {@link Http2Connection}. */
export interface Http2ConnectionOptions {
  /** The server's origin, such as "https://sessions.internal:50051". */
  readonly origin: string;
  /** node:http2 connect options: TLS (ca, cert, key) for an https origin. */
  readonly nodeOptions?: http2.SecureClientSessionOptions | undefined;
}

/** A session and what the connection tracks of it. */
interface Tracked {
  readonly session: http2.ClientHttp2Session;
  /** Streams open on it: while there are any, it keeps the process alive. */
  streams: number;
  /** Set by GOAWAY: its open streams finish, new calls go to a new session. */
  draining: boolean;
  /** When its last stream closed (Date.now()). */
  idleSince: number;
  idleTimer: NodeJS.Timeout | undefined;
}

/** A session without streams for this long is closed, as connect-node's is by default. */
const IDLE_TIMEOUT_MS = 15 * 60 * 1000;

/**
 * One HTTP/2 session at a time to one origin. Calls made while it connects
 * wait inside node:http2, which sends their HEADERS once connected; a
 * failed connection fails them with its error, and the next call connects
 * afresh.
 */
export class Http2Connection {
  private current: Tracked | undefined;

  constructor(private readonly options: Http2ConnectionOptions) {}

  /**
   * Opens a stream with `headers` (pseudo-headers :method and :path
   * included) on the current session, connecting first if there is none
   * usable. The stream's events are the caller's to handle, "error"
   * included.
   */
  request(headers: http2.OutgoingHttpHeaders): http2.ClientHttp2Stream {
    let tracked = this.usable();
    let stream: http2.ClientHttp2Stream;
    try {
      stream = tracked.session.request(headers);
    } catch (error) {
      // The session began closing between the check and the request (a
      // GOAWAY being processed): one more try, on a new session.
      if (!(tracked.session.closed || tracked.session.destroyed)) throw error;
      tracked.draining = true;
      tracked = this.usable();
      stream = tracked.session.request(headers);
    }
    if (tracked.streams++ === 0) tracked.session.ref();
    stream.on("close", () => this.streamClosed(tracked));
    return stream;
  }

  private usable(): Tracked {
    const current = this.current;
    if (
      current !== undefined &&
      !current.draining &&
      !current.session.closed &&
      !current.session.destroyed
    ) {
      return current;
    }
    const session = http2.connect(this.options.origin, this.options.nodeOptions);
    const tracked: Tracked = {
      session,
      streams: 0,
      draining: false,
      idleSince: Date.now(),
      idleTimer: undefined,
    };
    // Until a stream opens, the connection must not hold the process open.
    session.unref();
    // A failed connection or a dead socket fails the streams with the
    // error (each stream reports it); the session's own report only
    // retires it, and without this listener it would crash the process.
    session.on("error", () => this.retire(tracked));
    session.on("goaway", () => {
      this.retire(tracked);
      // Nothing left to finish on it: close it now rather than wait for
      // the server to.
      if (tracked.streams === 0) session.destroy();
    });
    session.on("close", () => this.retire(tracked));
    this.current = tracked;
    this.armIdleTimer(tracked);
    return tracked;
  }

  private retire(tracked: Tracked): void {
    tracked.draining = true;
    clearTimeout(tracked.idleTimer);
    tracked.idleTimer = undefined;
    if (this.current === tracked) this.current = undefined;
  }

  private streamClosed(tracked: Tracked): void {
    if (--tracked.streams > 0) return;
    tracked.session.unref();
    if (tracked.draining) {
      // A drained session has no more use: close it rather than wait
      // for the server to.
      if (!tracked.session.closed && !tracked.session.destroyed) tracked.session.close();
      return;
    }
    tracked.idleSince = Date.now();
    this.armIdleTimer(tracked);
  }

  /**
   * Closes the session once it has been idle for IDLE_TIMEOUT_MS. One timer
   * at a time rather than one per call: when it fires while streams are
   * open or before the idle period is over, it waits again.
   */
  private armIdleTimer(tracked: Tracked): void {
    if (tracked.idleTimer !== undefined) return;
    const wait = (delayMs: number) => {
      tracked.idleTimer = setTimeout(() => {
        tracked.idleTimer = undefined;
        if (tracked.draining) return;
        const idleMs = tracked.streams > 0 ? 0 : Date.now() - tracked.idleSince;
        if (idleMs < IDLE_TIMEOUT_MS) {
          wait(IDLE_TIMEOUT_MS - idleMs);
          return;
        }
        this.retire(tracked);
        tracked.session.close();
      }, delayMs).unref();
    };
    wait(IDLE_TIMEOUT_MS);
  }
}
