import {
  create,
  type DescEnum,
  type DescFile,
  type DescMessage,
  type DescService,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflectionRequest as RequestV1,
  ServerReflectionResponseSchema as ResponseV1Schema,
  ServerReflection as ServerReflectionV1,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  type ServerReflectionRequest as RequestV1Alpha,
  ServerReflectionResponseSchema as ResponseV1AlphaSchema,
  ServerReflection as ServerReflectionV1Alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC's NOT_FOUND, the error code reflection answers unknown names with. */
const NOT_FOUND = 5;

/** Where to find every file and symbol of the served services, and their dependencies. */
interface DescriptorIndex {
  readonly services: readonly string[];
  readonly files: ReadonlyMap<string, DescFile>;
  readonly symbols: ReadonlyMap<string, DescFile>;
  readonly messages: ReadonlySet<string>;
}

function indexServices(services: readonly DescService[]): DescriptorIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const messages = new Set<string>();
  const addEnum = (file: DescFile, enumeration: DescEnum) => {
    symbols.set(enumeration.typeName, file);
    // Enum values are scoped like their enum: siblings of it, not children.
    const scope = enumeration.typeName.slice(0, enumeration.typeName.lastIndexOf(".") + 1);
    for (const value of enumeration.values) symbols.set(`${scope}${value.name}`, file);
  };
  const addMessage = (file: DescFile, message: DescMessage) => {
    symbols.set(message.typeName, file);
    messages.add(message.typeName);
    for (const field of message.fields) symbols.set(`${message.typeName}.${field.name}`, file);
    for (const oneof of message.oneofs) symbols.set(`${message.typeName}.${oneof.name}`, file);
    for (const nested of message.nestedMessages) addMessage(file, nested);
    for (const nested of message.nestedEnums) addEnum(file, nested);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const message of file.messages) addMessage(file, message);
    for (const enumeration of file.enums) addEnum(file, enumeration);
    for (const service of file.services) {
      symbols.set(service.typeName, file);
      for (const method of service.methods) symbols.set(`${service.typeName}.${method.name}`, file);
    }
    for (const dependency of file.dependencies) addFile(dependency);
  };
  for (const service of services) addFile(service.file);
  return { services: services.map((s) => s.typeName), files, symbols, messages };
}

/** A file and everything it imports, transitively, each once. */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const dependency of f.dependencies) visit(dependency);
  };
  visit(file);
  return out;
}

/** The version-independent part of a reflection request (v1 and v1alpha are the same messages). */
type ReflectionRequest = Pick<RequestV1 | RequestV1Alpha, "host" | "messageRequest">;

/** The answer to one reflection request, as a message init shape shared by both versions. */
function answer(index: DescriptorIndex, request: ReflectionRequest) {
  const notFound = (what: string) => ({
    case: "errorResponse" as const,
    value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` },
  });
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? {
          case: "fileDescriptorResponse" as const,
          value: { fileDescriptorProto: withDependencies(file) },
        }
      : notFound(what);
  const r = request.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        case: "listServicesResponse" as const,
        value: { service: index.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return files(index.files.get(r.value), "file");
    case "fileContainingSymbol":
      return files(index.symbols.get(r.value), "symbol");
    case "fileContainingExtension":
      // None of the served files declares extensions.
      return notFound("extension");
    case "allExtensionNumbersOfType":
      return index.messages.has(r.value)
        ? {
            case: "allExtensionNumbersResponse" as const,
            value: { baseTypeName: r.value, extensionNumber: [] },
          }
        : notFound("type");
    default:
      return {
        case: "errorResponse" as const,
        value: { errorCode: 3, errorMessage: "request names no reflection query" },
      };
  }
}

/**
 * gRPC server reflection, v1 and v1alpha (grpcurl and older clients still
 * ask v1alpha), over the given services: they are listed, and every file
 * and symbol they use (messages, fields, enums, services, methods, and the
 * well-known types they import) can be fetched with its dependencies. So
 * grpcurl and buf curl work against the server with no .proto files.
 */
function createReflectionServices(services: readonly DescService[]) {
  const index = indexServices([...services, ServerReflectionV1, ServerReflectionV1Alpha]);
  // Both versions answer alike; only the message types differ.
  const respond = <R extends ReflectionRequest>(request: R) => ({
    validHost: request.host,
    originalRequest: request,
    messageResponse: answer(index, request),
  });
  const v1: ServiceImpl<typeof ServerReflectionV1> = {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield create(ResponseV1Schema, respond(request));
    },
  };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1Alpha> = {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield create(ResponseV1AlphaSchema, respond(request));
    },
  };
  return { v1, v1alpha };
}

/**
 * Serves reflection v1 and v1alpha on `router` over `services` (see
 * createReflectionServices).
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): void {
  const reflection = createReflectionServices(services);
  router.service(ServerReflectionV1, reflection.v1);
  router.service(ServerReflectionV1Alpha, reflection.v1alpha);
}

export { ServerReflectionV1, ServerReflectionV1Alpha };
