import { constants, type ServerHttp2Stream } from "node:http2";

/**
 * Asks the client, once an answer is complete, to stop sending a request
 * body the answer no longer needs: resets `stream` with RST_STREAM(NO_ERROR)
 * (RFC 9113, section 8.1), unless the body has ended by now (`bodyEnded`)
 * or the stream is gone, and releases the stream. Node counts a stream
 * against MAX_CONCURRENT_STREAMS (refusing new ones with ENHANCE_YOUR_CALM)
 * until its readable side has ended, which takes someone reading what
 * arrived before the reset; nobody does here, so destroying the stream once
 * its writable side has finished frees the slot (the RST_STREAM submitted
 * by close() is still sent). Both transports call it on the turn of the
 * event loop after their answer's last frame was queued: Node flushes the
 * frames already queued before a reset.
 */
export function resetUnreadRequest(stream: ServerHttp2Stream, bodyEnded: () => boolean): void {
  if (bodyEnded() || stream.closed || stream.destroyed) return;
  stream.close(constants.NGHTTP2_NO_ERROR);
  if (stream.writableFinished) stream.destroy();
  else stream.once("finish", () => stream.destroy());
}
