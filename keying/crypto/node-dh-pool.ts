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
 * Everything the main thread learns from the worker (that it is up, that an item is done) goes through
 * shared memory, never through a message event: a chain of awaited operations that only ever resolves
 * promises never lets the event loop turn, and would never see one.
 *
 * The worker starts on the first large batch (that batch runs on the main thread alone) and is unref'd;
 * if it dies, or is silent for a second, the main thread computes what is left, and after a death
 * everything runs locally.
 */

export type EphemeralCurve = "x25519" | "x448";

export interface Encapsulated {
  readonly publicKey: Uint8Array;
  readonly dh: Uint8Array;
}

/** Below this a batch is cheaper to run alone than to share (a round trip to the worker is ~0.1 ms). */
const MIN_SHARED_BATCH = 32;
/** How long the main thread waits for the worker's last items before doing them itself. */
const WORKER_SILENCE_MS = 1000;

/** Per item: untouched (or in the worker's hands), done or failed by the worker, or taken by the main thread. */
const STATUS_PENDING = 0;
const STATUS_DONE = 1;
const STATUS_FAILED = 2;
const STATUS_MAIN = 3;

/** Int32 slots at the start of a batch's memory: the next item to take, and how many the worker finished. */
const SLOT_CURSOR = 0;
const SLOT_WORKER_DONE = 1;
const HEADER = 8;

/**
 * The worker's side, a CommonJS script run with `eval`, so that it needs no file of its own next to the
 * compiled or bundled library. Per item it does what the backend's local encapsulation does (node-backend.ts),
 * generating the key with its public half already encoded, never exporting the KeyObject (see there why).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
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
  const slots = new Int32Array(sab, 0, 2);
  const status = new Uint8Array(sab, ${HEADER}, n);
  const keys = new Uint8Array(sab, ${HEADER} + n, n * size);
  const enc = new Uint8Array(sab, ${HEADER} + n + n * size, n * size);
  const dh = new Uint8Array(sab, ${HEADER} + n + 2 * n * size, n * size);
  for (let i = Atomics.add(slots, ${SLOT_CURSOR}, 1); i < n; i = Atomics.add(slots, ${SLOT_CURSOR}, 1)) {
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
    Atomics.add(slots, ${SLOT_WORKER_DONE}, 1);
    Atomics.notify(slots, ${SLOT_WORKER_DONE});
  }
});
Atomics.store(new Int32Array(workerData), 0, 1);
`;

interface Request {
  readonly publicKey: Uint8Array;
  readonly resolve: (e: Encapsulated) => void;
  readonly reject: (e: unknown) => void;
}

/** One batch's shared memory: the two slots, a status byte per item, then the recipients' keys, enc and DH. */
class SharedBatch {
  readonly sab: SharedArrayBuffer;
  readonly slots: Int32Array;
  readonly status: Uint8Array;
  readonly keys: Uint8Array;
  readonly enc: Uint8Array;
  readonly dh: Uint8Array;

  constructor(
    readonly n: number,
    readonly size: number,
  ) {
    this.sab = new SharedArrayBuffer(HEADER + n + 3 * n * size);
    this.slots = new Int32Array(this.sab, 0, 2);
    this.status = new Uint8Array(this.sab, HEADER, n);
    this.keys = new Uint8Array(this.sab, HEADER + n, n * size);
    this.enc = new Uint8Array(this.sab, HEADER + n + n * size, n * size);
    this.dh = new Uint8Array(this.sab, HEADER + n + 2 * n * size, n * size);
  }

  take(): number {
    return Atomics.add(this.slots, SLOT_CURSOR, 1);
  }

  result(i: number): Encapsulated {
    const { size } = this;
    return { publicKey: this.enc.slice(i * size, (i + 1) * size), dh: this.dh.slice(i * size, (i + 1) * size) };
  }

  /** Blocks until the worker has finished `count` items, or it has been silent for WORKER_SILENCE_MS. */
  awaitWorker(count: number): void {
    for (;;) {
      const done = Atomics.load(this.slots, SLOT_WORKER_DONE);
      if (done >= count || Atomics.wait(this.slots, SLOT_WORKER_DONE, done, WORKER_SILENCE_MS) === "timed-out") return;
    }
  }
}

export class EphemeralDhPool {
  private readonly queues = new Map<EphemeralCurve, Request[]>();
  private worker: NodeWorkerThreads.Worker | undefined;
  /** Set to 1 by the worker once it listens. */
  private up: Int32Array | undefined;
  private busy = false;
  private dead = false;

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
    const size = batch[0]!.publicKey.length;
    const shareable = batch.length >= MIN_SHARED_BATCH && batch.every((r) => r.publicKey.length === size);
    const worker = this.worker;
    if (!shareable || !worker || this.dead || this.busy || !this.up || Atomics.load(this.up, 0) !== 1) {
      if (shareable) this.start();
      for (const r of batch) this.runLocally(curve, r);
      return;
    }
    this.busy = true;
    const shared = new SharedBatch(batch.length, size);
    let settled = 0;
    /**
     * Hands out the worker's results in order from `from`, stopping at the first item still pending (in the
     * worker's hands or not taken yet); returns its index. Items are taken in increasing order, so the scan as
     * a whole is linear.
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
    try {
      batch.forEach((r, i) => shared.keys.set(r.publicKey, i * size));
      worker.postMessage({ sab: shared.sab, n: batch.length, size, crv: curve });
      let mine = 0;
      for (let i = shared.take(); i < batch.length; i = shared.take()) {
        Atomics.store(shared.status, i, STATUS_MAIN);
        mine++;
        this.runLocally(curve, batch[i]!);
        settled = settle(settled);
        // Lets the seals whose DH is ready run their KDF and AEAD here while the worker keeps multiplying: the
        // main thread has that work to do for every item anyway, so it takes fewer DH items itself.
        await null;
      }
      shared.awaitWorker(batch.length - mine);
    } catch {
      // postMessage failed: what the worker did not take runs below.
      this.dead = true;
    } finally {
      this.busy = false;
    }
    for (let i = settle(settled); i < batch.length; i = settle(i + 1)) {
      // Not finished by the worker (dead or silent): done here; a late result of the worker is ignored.
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

  /** Starts the worker (once); it takes batches once it has raised its flag in `up`. */
  private start(): void {
    if (this.worker || this.dead) return;
    try {
      const up = new Int32Array(new SharedArrayBuffer(4));
      const worker = new this.wt.Worker(WORKER_SOURCE, { eval: true, workerData: up.buffer });
      worker.unref();
      const die = () => {
        this.dead = true;
        this.worker = undefined;
      };
      worker.on("error", die);
      worker.on("exit", die);
      this.worker = worker;
      this.up = up;
    } catch {
      this.dead = true;
    }
  }
}
