/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) that serves the
 * compiled descriptor set as it is: real file names, imports, snake_case
 * fields with their json names, fully qualified types, map entries and the
 * comments. @grpc/reflection rebuilds descriptors from a proto-loader
 * package definition and loses all of that (grpc/grpc-node#2595, #3018),
 * which strict clients such as grpcurl and protobuf's descriptor pools
 * refuse; this is the small service that does not.
 *
 * Behaviour follows grpc-go's reference server: a file request answers with
 * the file and every file it imports, transitively, that this stream has not
 * sent yet; an unknown name is an error_response with NOT_FOUND.
 */
import * as grpc from '@grpc/grpc-js';
import { loadApi, serviceDefinition, type Api, type DescriptorFile } from './api.ts';

/** The reflection services, in the order clients try them. */
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

/** A reflection request as proto-loader decodes it. */
interface ReflectionRequest {
  host: string;
  messageRequest?: 'fileByFilename' | 'fileContainingSymbol' | 'fileContainingExtension' | 'allExtensionNumbersOfType' | 'listServices';
  fileByFilename?: string;
  fileContainingSymbol?: string;
  fileContainingExtension?: { containingType: string; extensionNumber: number };
  allExtensionNumbersOfType?: string;
  listServices?: string;
}

type ReflectionResponse = { validHost: string; originalRequest: ReflectionRequest } & (
  | { fileDescriptorResponse: { fileDescriptorProto: Uint8Array[] } }
  | { allExtensionNumbersResponse: { baseTypeName: string; extensionNumber: number[] } }
  | { listServicesResponse: { service: { name: string }[] } }
  | { errorResponse: { errorCode: number; errorMessage: string } }
);

/** Answers reflection requests for one server, which serves `services`. */
export class Reflection {
  private readonly bySymbol = new Map<string, DescriptorFile>();
  private readonly services: string[];

  constructor(
    services: readonly string[],
    private readonly api: Api = loadApi(),
  ) {
    for (const file of api.files.values()) for (const symbol of file.symbols) this.bySymbol.set(symbol, file);
    for (const name of services) if (!this.bySymbol.has(name)) throw new Error(`service ${name} is not in the compiled API`);
    this.services = [...new Set([...services, ...REFLECTION_SERVICES])].sort();
  }

  /** Adds both reflection services to a server. */
  addToServer(server: grpc.Server): void {
    for (const name of REFLECTION_SERVICES) {
      server.addService(serviceDefinition(name), { ServerReflectionInfo: (call: grpc.ServerDuplexStream<ReflectionRequest, ReflectionResponse>) => this.serve(call) });
    }
  }

  /** Answers one request; `sent` holds the files this stream has sent already. */
  answer(request: ReflectionRequest, sent: Set<string>): ReflectionResponse {
    const base = { validHost: request.host, originalRequest: request };
    const notFound = (what: string) => ({ ...base, errorResponse: { errorCode: grpc.status.NOT_FOUND, errorMessage: `${what} not found` } });
    switch (request.messageRequest) {
      case 'listServices':
        return { ...base, listServicesResponse: { service: this.services.map((name) => ({ name })) } };
      case 'fileByFilename': {
        const file = this.api.files.get(request.fileByFilename ?? '');
        return file ? { ...base, fileDescriptorResponse: { fileDescriptorProto: this.withImports(file, sent) } } : notFound(`file ${request.fileByFilename}`);
      }
      case 'fileContainingSymbol': {
        const file = this.bySymbol.get(stripDot(request.fileContainingSymbol ?? ''));
        return file ? { ...base, fileDescriptorResponse: { fileDescriptorProto: this.withImports(file, sent) } } : notFound(`symbol ${request.fileContainingSymbol}`);
      }
      case 'fileContainingExtension': {
        // The API declares no extensions.
        const ext = request.fileContainingExtension;
        return notFound(`extension ${ext?.extensionNumber} of ${ext?.containingType}`);
      }
      case 'allExtensionNumbersOfType': {
        const type = stripDot(request.allExtensionNumbersOfType ?? '');
        return this.bySymbol.has(type) ? { ...base, allExtensionNumbersResponse: { baseTypeName: type, extensionNumber: [] } } : notFound(`type ${type}`);
      }
      default:
        return { ...base, errorResponse: { errorCode: grpc.status.INVALID_ARGUMENT, errorMessage: 'the request names no message_request' } };
    }
  }

  private serve(call: grpc.ServerDuplexStream<ReflectionRequest, ReflectionResponse>): void {
    const sent = new Set<string>();
    call.on('data', (request: ReflectionRequest) => {
      if (!call.cancelled) call.write(this.answer(request, sent));
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  }

  /** The file first, then each import not yet sent on this stream, depth first. */
  private withImports(file: DescriptorFile, sent: Set<string>): Uint8Array[] {
    const out: Uint8Array[] = [file.bytes];
    sent.add(file.name);
    const visit = (name: string) => {
      if (sent.has(name)) return;
      sent.add(name);
      const dep = this.api.files.get(name);
      if (!dep) return;
      out.push(dep.bytes);
      for (const next of dep.dependencies) visit(next);
    };
    for (const name of file.dependencies) visit(name);
    return out;
  }
}

function stripDot(name: string): string {
  return name.startsWith('.') ? name.slice(1) : name;
}
