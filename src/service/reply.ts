import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";

/**
 * A handler's response in both forms a serving stack may need: as a message
 * (for JSON, and for stacks that encode themselves) and as protobuf binary.
 * Handlers that can produce the binary form without building the message
 * (see encodeSessionsResponse) do so, and build the message only if asked.
 */
export interface Reply<T extends DescMessage> {
  message(): MessageInitShape<T>;
  binary(): Uint8Array;
}

/** A reply built from a message. */
export function messageReply<T extends DescMessage>(
  schema: T,
  init: MessageInitShape<T>,
): Reply<T> {
  return {
    message: () => init,
    binary: () => toBinary(schema, create(schema, init)),
  };
}

/** A reply whose binary form is at hand and whose message is built on demand. */
export function encodedReply<T extends DescMessage>(
  binary: Uint8Array,
  message: () => MessageInitShape<T>,
): Reply<T> {
  return { message, binary: () => binary };
}
