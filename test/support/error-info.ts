import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { type ErrorInfo, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_DOMAIN } from "../../src/error-info.js";

/** An ErrorInfo of this service, as the tests compare them: plain fields only. */
export interface SeenErrorInfo {
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Record<string, string>;
}

/** The fields of an ErrorInfo message, for toEqual. */
export function plainErrorInfo(info: ErrorInfo): SeenErrorInfo {
  return { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
}

/** The ErrorInfo this service sends for `reason` with `metadata`. */
export function expectedErrorInfo(
  reason: string,
  metadata: Record<string, string> = {},
): SeenErrorInfo {
  return { reason, domain: ERROR_DOMAIN, metadata };
}

/** An ErrorInfo's binary encoding in base64 without padding, as Connect's error JSON and buf curl show it. */
export function errorInfoBase64(reason: string, metadata: Record<string, string> = {}): string {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata });
  return Buffer.from(toBinary(ErrorInfoSchema, info)).toString("base64").replace(/=+$/, "");
}

/** The entry of a Connect error JSON's `details` that carries this ErrorInfo. */
export function errorInfoJson(reason: string, metadata: Record<string, string> = {}) {
  return {
    type: "google.rpc.ErrorInfo",
    value: errorInfoBase64(reason, metadata),
    debug: {
      reason,
      domain: ERROR_DOMAIN,
      ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    },
  };
}

/** A google.rpc.Status read field by field, and the ErrorInfos among its details. */
export interface DecodedStatus {
  readonly code: number;
  readonly message: string;
  readonly errorInfos: SeenErrorInfo[];
  /** The type URLs of every detail, in order. */
  readonly typeUrls: string[];
}

/**
 * Decodes a grpc-status-details-bin value as google.rpc.Status (code = 1,
 * message = 2, repeated google.protobuf.Any details = 3) with a wire reader
 * of its own, rather than connect's decoder, so that the encoding the server
 * writes is checked against the message's definition and not against the
 * code that wrote it.
 */
export function decodeGrpcStatus(bytes: Uint8Array): DecodedStatus {
  const reader = new BinaryReader(bytes);
  let code = 0;
  let message = "";
  const errorInfos: SeenErrorInfo[] = [];
  const typeUrls: string[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) code = reader.int32();
    else if (field === 2) message = reader.string();
    else if (field === 3) {
      const any = fromBinary(AnySchema, reader.bytes());
      typeUrls.push(any.typeUrl);
      const info = anyUnpack(any, ErrorInfoSchema);
      if (info) errorInfos.push(plainErrorInfo(info));
    } else {
      reader.skip(wireType);
    }
  }
  return { code, message, errorInfos, typeUrls };
}
