/**
 * The MLS interop client behind the gRPC server: the state tables of one server (group states, pending
 * KeyPackages = "transactions", external signers, pending ReInits) and one handler per RPC of
 * mls_client.proto, each a thin translation onto the keying/mls group API.
 *
 * State, transaction, signer and reinit ids come from one counter, so StorePSK's `state_or_transaction_id`
 * is never ambiguous. A client's PSKs live with the client (its transaction, then the state it joins with),
 * as in the reference runner, which stores a PSK at a joiner before the joiner has a state.
 */
import * as grpc from "@grpc/grpc-js";
import { encode } from "../keying/codec/writer.js";
import { toHex } from "../keying/codec/bytes.js";
import { SUITE_IDS, getCipherSuite, isCipherSuiteId, nativeProvider, type CipherSuite, type CryptoProvider } from "../keying/crypto/index.js";
import { generateSigningIdentity, type SigningIdentity } from "../keying/mls/key-package.js";
import { encodeExternalSender } from "../keying/mls/messages.js";
import type { MlsMethod, MlsRequests, MlsResponses } from "./proto.js";

export interface InteropServiceOptions {
  /** Crypto provider for every group of this server (default native). */
  readonly provider?: CryptoProvider;
  /** What rpc Name answers. */
  readonly name?: string;
}

/** An error with the gRPC status it should produce. */
export class InteropError extends Error {
  override readonly name = "InteropError";
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

const notFound = (what: string, id: number): InteropError => new InteropError(grpc.status.NOT_FOUND, `no ${what} with id ${id}`);
const invalid = (message: string): InteropError => new InteropError(grpc.status.INVALID_ARGUMENT, message);

/** What one simulated client holds across its transaction and states. */
interface ClientContext {
  readonly identity: Uint8Array;
  /** External PSKs by hex psk_id. */
  readonly psks: Map<string, Uint8Array>;
}

interface ExternalSigner {
  readonly suite: CipherSuite;
  readonly identity: SigningIdentity;
  readonly externalSender: Uint8Array;
}

type Handler<M extends MlsMethod> = (request: MlsRequests[M]) => Promise<MlsResponses[M]>;
type Handlers = { [M in MlsMethod]?: Handler<M> };

export class InteropService {
  readonly name: string;
  readonly provider: CryptoProvider;
  private nextId = 1;
  private readonly clients = new Map<number, ClientContext>();
  private readonly signers = new Map<number, ExternalSigner>();
  private readonly handlers: Handlers;

  constructor(options: InteropServiceOptions = {}) {
    this.provider = options.provider ?? nativeProvider;
    this.name = options.name ?? `Conclave (${this.provider.name})`;
    this.handlers = {
      Name: async () => ({ name: this.name }),
      SupportedCiphersuites: async () => ({ ciphersuites: [...SUITE_IDS] }),
      StorePSK: async (r) => this.storePsk(r),
      CreateExternalSigner: async (r) => this.createExternalSigner(r),
      Free: async (r) => this.free(r),
    };
  }

  /** Dispatches one RPC; rejects with InteropError (or a keying error) on failure. */
  handle(method: string, request: unknown): Promise<unknown> {
    const h = (this.handlers as Record<string, ((r: unknown) => Promise<unknown>) | undefined>)[method];
    if (!h) return Promise.reject(new InteropError(grpc.status.UNIMPLEMENTED, `${method} is not supported by this client`));
    return h(request);
  }

  /** Number of live entries across all tables (for tests that check Free). */
  get size(): number {
    return this.clients.size + this.signers.size;
  }

  private allocate(): number {
    return this.nextId++;
  }

  private async suite(id: number): Promise<CipherSuite> {
    if (!isCipherSuiteId(id)) throw new InteropError(grpc.status.INVALID_ARGUMENT, `unsupported cipher suite ${id}`);
    return getCipherSuite(id, this.provider);
  }

  private async storePsk(r: MlsRequests["StorePSK"]): Promise<MlsResponses["StorePSK"]> {
    const client = this.clients.get(r.stateOrTransactionId);
    if (!client) throw notFound("state or transaction", r.stateOrTransactionId);
    if (r.pskId.length === 0) throw invalid("empty psk_id");
    client.psks.set(toHex(r.pskId), Uint8Array.from(r.pskSecret));
    return {};
  }

  private async createExternalSigner(r: MlsRequests["CreateExternalSigner"]): Promise<MlsResponses["CreateExternalSigner"]> {
    const suite = await this.suite(r.cipherSuite);
    const identity = await generateSigningIdentity(suite, Uint8Array.from(r.identity));
    const externalSender = encode(encodeExternalSender, { signatureKey: identity.signaturePublicKey, credential: identity.credential });
    const signerId = this.allocate();
    this.signers.set(signerId, { suite, identity, externalSender });
    return { signerId, externalSender };
  }

  private async free(r: MlsRequests["Free"]): Promise<MlsResponses["Free"]> {
    this.clients.delete(r.stateId);
    this.signers.delete(r.stateId);
    return {};
  }
}
