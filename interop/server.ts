/**
 * gRPC transport of the MLS interop harness: serves an InteropService (one per server, so two servers in one
 * process share nothing) over the MLSClient service of the shared proto. Every failure becomes a gRPC status
 * whose message names the check that failed (never key material); RPCs the service does not support answer
 * UNIMPLEMENTED with the reason.
 */
import * as grpc from "@grpc/grpc-js";
import { MlsDecodeError } from "../keying/codec/errors.js";
import { CryptoError } from "../keying/crypto/errors.js";
import { MlsValidationError } from "../keying/mls/errors.js";
import { loadInteropProto, type InteropProto } from "./proto.js";
import { InteropError, InteropService, type InteropServiceOptions } from "./service.js";

export interface InteropServerOptions extends InteropServiceOptions {
  /** Default 0: any free port. */
  readonly port?: number;
  /** Default "127.0.0.1". */
  readonly host?: string;
  readonly proto?: InteropProto;
  /** Called once per failed RPC (method and status message), e.g. to log to stderr. */
  readonly onError?: (method: string, message: string) => void;
}

const CLOSE_GRACE_MS = 2000;

export interface RunningInteropServer {
  readonly port: number;
  /** host:port for `--client`. */
  readonly address: string;
  readonly service: InteropService;
  /** Stops accepting calls; open connections get a short grace, then are cut. */
  close(): Promise<void>;
}

/** Maps an exception to a gRPC status; only our typed errors carry their message out. */
export function toStatus(e: unknown): { code: grpc.status; details: string } {
  if (e instanceof InteropError) return { code: e.code, details: e.message };
  if (e instanceof MlsValidationError || e instanceof MlsDecodeError || e instanceof CryptoError) return { code: grpc.status.INVALID_ARGUMENT, details: e.message };
  // Anything else is a bug of ours; its message is a programming error text, not data from the peer.
  return { code: grpc.status.INTERNAL, details: e instanceof Error ? `${e.name}: ${e.message}` : "internal error" };
}

// Ample for a GroupInfo with the ratchet tree of a few thousand members; bounds what a peer can make us buffer.
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export async function startInteropServer(options: InteropServerOptions = {}): Promise<RunningInteropServer> {
  const proto = options.proto ?? (await loadInteropProto());
  const service = new InteropService(options);
  const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_MESSAGE_BYTES, "grpc.max_send_message_length": MAX_MESSAGE_BYTES });

  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of proto.methods) {
    implementation[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      service.handle(method, call.request).then(
        (res) => callback(null, res),
        (e: unknown) => {
          const { code, details } = toStatus(e);
          options.onError?.(method, details);
          callback({ code, details, name: "InteropError", message: details });
        },
      );
    };
  }
  server.addService(proto.service, implementation);

  const host = options.host ?? "127.0.0.1";
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${options.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    address: `${host.includes(":") ? `[${host}]` : host}:${port}`,
    service,
    close: () =>
      new Promise<void>((resolve) => {
        // A peer that keeps its connection open would hold a graceful shutdown forever: cut it after a grace.
        const force = setTimeout(() => server.forceShutdown(), CLOSE_GRACE_MS);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
