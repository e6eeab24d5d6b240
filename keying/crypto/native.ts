import type * as NodeCrypto from "node:crypto";
import type * as NodeWorkerThreads from "node:worker_threads";
import type { CryptoProvider, SuitePrimitives } from "./cipher-suite.js";
import { KEMS } from "./algorithms.js";
import { composePrimitives } from "./compose.js";
import { CryptoError } from "./errors.js";
import { Hpke } from "./hpke.js";
import { hkdf } from "./kdf.js";
import { nodeBackend } from "./node-backend.js";
import type { Awaitable, Backend } from "./primitives.js";
import { SUITES, type SuiteParams } from "./suites.js";
import { webBackend, type WebAlgorithm } from "./web-backend.js";

/**
 * The native provider: node:crypto in Node; in browsers and workers WebCrypto for each primitive
 * it offers, @noble/* (loaded only when needed) for the rest. HPKE is our RFC 9180 code over
 * whichever DH, HKDF and AEAD were chosen.
 */

export interface NativeOptions {
  /** "web" skips node:crypto, so tests can run the browser path in Node. */
  readonly runtime?: "auto" | "web";
  /** Algorithms to treat as missing from WebCrypto (tests of the noble fallback). */
  readonly webUnavailable?: readonly WebAlgorithm[];
}

// Held in variables so bundlers leave the imports alone: browsers never resolve them.
const NODE_CRYPTO = "node:crypto";
const NODE_WORKER_THREADS = "node:worker_threads";

async function loadNodeModule<T>(name: string): Promise<T | undefined> {
  const proc = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (!proc?.versions?.node) return undefined;
  try {
    return (await import(/* @vite-ignore */ name)) as T;
  } catch {
    return undefined;
  }
}

/** noble as a Backend that is only fetched (a separate chunk in browser bundles) on first use. */
const lazyNoble: Backend = {
  name: "noble",
  hash: async (alg) => (await import("./noble-backend.js")).nobleBackend.hash(alg),
  aead: async (alg) => (await import("./noble-backend.js")).nobleBackend.aead(alg),
  dh: async (kem) => (await import("./noble-backend.js")).nobleBackend.dh(kem),
  signer: async (scheme) => (await import("./noble-backend.js")).nobleBackend.signer(scheme),
  randomBytes: () => {
    throw new CryptoError("operation-failed", "no random source");
  },
};

async function chooseBackends(options: NativeOptions): Promise<readonly Backend[]> {
  const nc = options.runtime === "web" ? undefined : await loadNodeModule<typeof NodeCrypto>(NODE_CRYPTO);
  if (nc) return [nodeBackend(nc, await loadNodeModule<typeof NodeWorkerThreads>(NODE_WORKER_THREADS))];
  return [webBackend(globalThis.crypto, options.webUnavailable ?? []), lazyNoble];
}

/** The first backend that offers the primitive. */
async function first<T>(backends: readonly Backend[], get: (b: Backend) => Awaitable<T | undefined>, what: string): Promise<T> {
  for (const b of backends) {
    const found = await get(b);
    if (found !== undefined) return found;
  }
  throw new CryptoError("unsupported-suite", `no backend offers ${what}`);
}

async function buildPrimitives(params: SuiteParams, backends: readonly Backend[]): Promise<SuitePrimitives> {
  const kemHash = KEMS[params.kem].hash;
  const [hash, kemHashFns, aead, dh, signer] = await Promise.all([
    first(backends, (b) => b.hash(params.hash), params.hash),
    first(backends, (b) => b.hash(kemHash), kemHash),
    first(backends, (b) => b.aead(params.aead), params.aead),
    first(backends, (b) => b.dh(params.kem), params.kem),
    first(backends, (b) => b.signer(params.signature), params.signature),
  ]);
  const hpke = new Hpke({ kem: params.kem, kdf: params.hash, aead: params.aead }, { dh, kemKdf: hkdf(kemHashFns), kdf: hkdf(hash), aead });
  return composePrimitives(params, { hash, aead, signer, hpke, randomBytes: backends[0]!.randomBytes });
}

export function createNativeProvider(options: NativeOptions = {}): CryptoProvider {
  let backends: Promise<readonly Backend[]> | undefined;
  return {
    name: "native",
    async primitives(id) {
      const params = SUITES[id];
      if (!params) throw new CryptoError("unsupported-suite", `cipher suite ${String(id)}`);
      backends ??= chooseBackends(options);
      return buildPrimitives(params, await backends);
    },
  };
}

export const nativeProvider: CryptoProvider = createNativeProvider();
