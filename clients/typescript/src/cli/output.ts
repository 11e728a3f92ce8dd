/**
 * How sessionstore-ctl prints: aligned tables for people, and for scripts
 * (--json) the messages in protobuf's JSON mapping, the form every
 * SessionStore client and `buf curl` share. JSON prints every field, its
 * default value included (`"deleted": false`), so a script need not know
 * proto3's omissions.
 */
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import {
  EventType,
  type Session,
  type SessionEvent,
  TokenTransport,
} from "../gen/sessionstore/v1/session_store_pb.js";

/** A message as one line of JSON. */
export function jsonLine<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): string {
  return JSON.stringify(toJson(schema, message, { alwaysEmitImplicit: true }));
}

/** A message as a JSON value, to nest in a document of the CLI's own. */
export function jsonValue<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

/**
 * Rows as columns aligned by two spaces, the header first; the last column
 * is not padded, so no line ends in spaces.
 */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) =>
    Math.max(...all.map((row) => (row[column] ?? "").length)),
  );
  return all
    .map((row) =>
      row
        .map((cell, column) =>
          column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0),
        )
        .join("  "),
    )
    .join("\n");
}

/** A timestamp to the second in UTC ("2025-01-02T03:04:05Z"), or "-" when unset. */
export function time(timestamp: Timestamp | undefined): string {
  return timestamp
    ? timestampDate(timestamp)
        .toISOString()
        .replace(/\.\d{3}Z$/, "Z")
    : "-";
}

/** An empty string as "-", so that a table's columns stay readable. */
function orDash(text: string): string {
  return text === "" ? "-" : text;
}

/** The columns of `list`, one row per session. */
export const SESSION_COLUMNS = [
  "SESSION",
  "VERSION",
  "CREATED",
  "REFRESHED",
  "STORAGE EXPIRES",
  "IP",
];

export function sessionRow(session: Session): string[] {
  return [
    session.id,
    String(session.version),
    time(session.createdAt),
    time(session.refreshedAt),
    time(session.storageExpiresAt),
    orDash(session.lastKnownIp),
  ];
}

/** Every field of one session, one per line (get and touch). */
export function sessionDetails(session: Session): string {
  const payload = session.extraPayload;
  return table(
    ["FIELD", "VALUE"],
    [
      ["session", session.id],
      ["user", session.userId],
      ["version", String(session.version)],
      ["created", time(session.createdAt)],
      ["refreshed", time(session.refreshedAt)],
      ["expires", time(session.expiresAt)],
      ["storage expires", time(session.storageExpiresAt)],
      ["ip", orDash(session.lastKnownIp)],
      ["token transport", TokenTransport[session.tokenSignatureTransport] ?? "-"],
      ["refresh token id", orDash(session.refreshTokenId)],
      ["payload", payload && Object.keys(payload).length > 0 ? JSON.stringify(payload) : "-"],
    ],
  );
}

/** The widest event type's name, so that watch's lines align. */
const TYPE_WIDTH = Math.max(
  ...Object.values(EventType)
    .filter((value) => typeof value === "string")
    .map((name) => name.length),
);

/**
 * One event as a line for people: its time to the millisecond, type,
 * session ("-" for DELETED_BY_USER), version, and the event id to resume
 * after with --after.
 */
export function eventLine(event: SessionEvent): string {
  const at = event.time ? timestampDate(event.time).toISOString() : "-";
  return [
    at,
    (EventType[event.type] ?? String(event.type)).padEnd(TYPE_WIDTH),
    orDash(event.sessionId),
    `version=${event.version}`,
    `event=${event.eventId}`,
  ].join("  ");
}
