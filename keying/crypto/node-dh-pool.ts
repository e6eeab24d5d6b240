import type * as NodeWorkerThreads from "node:worker_threads";
import { CryptoError } from "./errors.js";

/**
 * Part of the Node backend: HPKE encapsulations (a fresh X25519/X448 key pair and its DH with the
 * recipient's key) shared between the main thread and one worker thread.
 *
 * A commit's UpdatePath seals its path secrets to about one key per member, all started together; the
 * two scalar multiplications of each seal are most of its cost, and node:crypto runs them synchronously
 * on the calling thread. Requests made in the same turn are gathered into one batch; main thread and
 * worker take items from a shared counter (Atomics) until none is left, so neither waits for the other
 * beyond the item in hand, and on a busy machine, where the worker gets no core, the main thread simply
 * does everything. The ephemeral private keys never leave the thread that made them; the DH outputs
 * cross in a SharedArrayBuffer that is zeroed once read.
 *
 * The worker starts on the first large batch (that batch runs on the main thread alone), is unref'd
 * whenever no batch is in flight, and if it ever fails the pool computes everything locally.
 */

export type EphemeralCurve = "x25519" | "x448";

export interface Encapsulated {
  readonly publicKey: Uint8Array;
  readonly dh: Uint8Array;
}

/** Below this a batch is cheaper to run alone than to share (a round trip to the worker is ~0.1 ms). */
const MIN_SHARED_BATCH = 32;

/** Per item: untouched, done or failed by the worker, or taken by the main thread. */
const STATUS_PENDING = 0;
const STATUS_DONE = 1;
const STATUS_FAILED = 2;
const STATUS_MAIN = 3;

/**
 * The worker's side, a CommonJS script run with `eval`, so that it needs no file of its own next to the
 * compiled or bundled library. Per item it does what the backend's local encapsulation does (node-backend.ts),
 * generating the key with its public half already encoded, never exporting the KeyObject (see there why).
 */
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const nc = require("node:crypto");
const publics = new Map();
function publicKey(crv, raw) {
  const k = crv + String.fromCharCode.apply(null, raw);
  let key = publics.get(k);
  if (!key) {
    key = nc.createPublicKey({ key: { kty: "OKP", crv: crv === "x25519" ? "X25519" : "X448", x: Buffer.from(raw).toString("base64url") }, format: "jwk" });
    if (publics.size >= 4096) publics.delete(publics.keys().next().value);
    publics.set(k, key);
  }
  return key;
}
parentPort.on("message", ({ sab, n, size, crv }) => {
  const cursor = new Int32Array(sab, 0, 1);
  const status = new Uint8Array(sab, 4, n);
  const keys = new Uint8Array(sab, 4 + n, n * size);
  const enc = new Uint8Array(sab, 4 + n + n * size, n * size);
  const dh = new Uint8Array(sab, 4 + n + 2 * n * size, n * size);
  for (let i = Atomics.add(cursor, 0, 1); i < n; i = Atomics.add(cursor, 0, 1)) {
    try {
      const kp = nc.generateKeyPairSync(crv, { publicKeyEncoding: { format: "jwk" } });
      const pub = Buffer.from(kp.publicKey.x, "base64url");
      const z = nc.diffieHellman({ privateKey: kp.privateKey, publicKey: publicKey(crv, keys.subarray(i * size, (i + 1) * size)) });
      if (pub.length !== size || z.length !== size) throw new Error("length");
      enc.set(pub, i * size);
      dh.set(z, i * size);
      Atomics.store(status, i, ${STATUS_DONE});
    } catch {
      Atomics.store(status, i, ${STATUS_FAILED});
    }
  }
  parentPort.postMessage("done");
});
parentPort.postMessage("ready");
`;

interface Request {
  readonly publicKey: Uint8Array;
  readonly resolve: (e: Encapsulated) => void;
  readonly reject: (e: unknown) => void;
}

/** One batch's shared memory: a counter, a status byte per item, then the recipients' keys, enc and DH. */
class SharedBatch {
  readonly sab: SharedArrayBuffer;
  readonly cursor: Int32Array;
  readonly status: Uint8Array;
  readonly keys: Uint8Array;
  readonly enc: Uint8Array;
  readonly dh: Uint8Array;

  constructor(
    readonly n: number,
    readonly size: number,
  ) {
    this.sab = new SharedArrayBuffer(4 + n + 3 * n * size);
    this.cursor = new Int32Array(this.sab, 0, 1);
    this.status = new Uint8Array(this.sab, 4, n);
    this.keys = new Uint8Array(this.sab, 4 + n, n * size);
    this.enc = new Uint8Array(this.sab, 4 + n + n * size, n * size);
    this.dh = new Uint8Array(this.sab, 4 + n + 2 * n * size, n * size);
  }

  result(i: number): Encapsulated {
    const { size } = this;
    return { publicKey: this.enc.slice(i * size, (i + 1) * size), dh: this.dh.slice(i * size, (i + 1) * size) };
  }
}

export class EphemeralDhPool {
  private readonly queues = new Map<EphemeralCurve, Request[]>();
  private worker: NodeWorkerThreads.Worker | undefined;
  private ready = false;
  private busy = false;
  private broken = false;

  /** `local` is the main thread's own encapsulation (the backend's, with its key caches). */
  constructor(
    private readonly wt: typeof NodeWorkerThreads,
    private readonly local: (curve: EphemeralCurve, publicKey: Uint8Array) => Encapsulated,
  ) {}

  encapsulate(curve: EphemeralCurve, publicKey: Uint8Array): Promise<Encapsulated> {
    return new Promise((resolve, reject) => {
      let queue = this.queues.get(curve);
      if (!queue) {
        queue = [];
        this.queues.set(curve, queue);
        // Every seal of an UpdatePath is requested before the first await returns: one microtask later the batch is whole.
        queueMicrotask(() => {
          this.queues.delete(curve);
          void this.flush(curve, queue!);
        });
      }
      queue.push({ publicKey, resolve, reject });
    });
  }

  private async flush(curve: EphemeralCurve, batch: Request[]): Promise<void> {
    const worker = this.worker;
    const size = batch[0]!.publicKey.length;
    const shareable = batch.length >= MIN_SHARED_BATCH && batch.every((r) => r.publicKey.length === size);
    if (!shareable || !worker || !this.ready || this.busy) {
      if (shareable) this.start();
      for (const r of batch) this.runLocally(curve, r);
      return;
    }
    this.busy = true;
    worker.ref();
    const shared = new SharedBatch(batch.length, size);
    /**
     * Hands out the worker's results in order from `from`, stopping at the first item still pending (in the
     * worker's hands or never taken); returns its index. Items are taken in increasing order, so the
     * scan as a whole is linear.
     */
    const settle = (from: number): number => {
      let i = from;
      for (; i < batch.length; i++) {
        const status = Atomics.load(shared.status, i);
        if (status === STATUS_PENDING) break;
        if (status === STATUS_DONE) batch[i]!.resolve(shared.result(i));
        else if (status === STATUS_FAILED) batch[i]!.reject(new CryptoError("invalid-public-key", `${curve} key agreement failed`));
      }
      return i;
    };
    let settled = 0;
    try {
      batch.forEach((r, i) => shared.keys.set(r.publicKey, i * size));
      const finished = new Promise<void>((resolve) => {
        const done = () => {
          worker.off("message", done);
          worker.off("exit", done);
          resolve();
        };
        worker.on("message", done);
        worker.on("exit", done);
      });
      worker.postMessage({ sab: shared.sab, n: batch.length, size, crv: curve });
      for (let i = Atomics.add(shared.cursor, 0, 1); i < batch.length; i = Atomics.add(shared.cursor, 0, 1)) {
        Atomics.store(shared.status, i, STATUS_MAIN);
        this.runLocally(curve, batch[i]!);
        settled = settle(settled);
        // Lets the seals whose DH is ready run their KDF and AEAD here while the worker keeps multiplying: the
        // main thread has that work to do for every item anyway, so it takes fewer DH items itself.
        await null;
      }
      await finished;
    } catch {
      // postMessage failed: the worker is unusable, and what it did not take runs below.
      this.broken = true;
      this.worker = undefined;
    } finally {
      this.busy = false;
      worker.unref();
    }
    for (let i = settle(settled); i < batch.length; i = settle(i + 1)) {
      // Never taken, or taken by a worker that died before finishing it.
      this.runLocally(curve, batch[i]!);
    }
    shared.dh.fill(0);
  }

  private runLocally(curve: EphemeralCurve, r: Request): void {
    try {
      r.resolve(this.local(curve, r.publicKey));
    } catch (e) {
      r.reject(e);
    }
  }

  /** Starts the worker (once); it is usable after its "ready" message. */
  private start(): void {
    if (this.worker || this.broken) return;
    try {
      const worker = new this.wt.Worker(WORKER_SOURCE, { eval: true });
      worker.unref();
      worker.once("message", () => (this.ready = true));
      const fail = () => {
        this.broken = true;
        this.ready = false;
        this.worker = undefined;
      };
      worker.on("error", fail);
      worker.on("exit", fail);
      this.worker = worker;
    } catch {
      this.broken = true;
    }
  }
}
