import { SFrameContext, type SFrameContextOptions } from "./context.js";
import { SFrameError } from "./errors.js";
import { DEFAULT_SFRAME_SUITE, sframeSuite, type SFrameSuite, type SFrameSuiteId } from "./suites.js";
import { INSPECT, redacted } from "../redact.js";

/**
 * RFC 9605 §5.2: SFrame keyed from MLS. Each epoch yields one base_key from the MLS exporter; every
 * member's KID carries its leaf index and the epoch's low E bits, and since the KID is in the
 * derivation labels each sender gets its own sframe_key and salt from the shared base_key.
 *
 *   KID = (context << (S + E)) | (leaf_index << E) | (epoch mod 2^E)
 *
 * E = 4: at most 16 epochs are live at once. An old epoch is kept only for a grace of a few seconds
 * after the next commit (BRIEF decision 7) and each epoch is one commit, so 16 covers any realistic
 * burst of joins and leaves inside one grace window; when it does not, the RFC's rule drops the
 * oldest, which only costs the frames of a sender still 16 commits behind. A wider E would add a KID
 * byte for every sender; with E = 4 leaves 0..15 fit one byte and 16..4095 two, as the RFC's
 * overhead analysis assumes.
 *
 * S = 16, fixed rather than sized to the current group, so a receiver parses any KID without knowing
 * the roster of its epoch. With context 0 the KID value does not depend on S at all, so this costs no
 * byte; it caps the tree at 2^16 leaves, far above a call. The top 44 bits are the context, which a
 * member uses to give each of its outbound streams its own KID and therefore its own CTR space.
 */
export const SFRAME_EPOCH_BITS = 4;
export const SFRAME_INDEX_BITS = 16;
export const MAX_SFRAME_EPOCHS = 1 << SFRAME_EPOCH_BITS;
export const MAX_SFRAME_LEAVES = 1 << SFRAME_INDEX_BITS;
export const MAX_KID_CONTEXT = (1n << BigInt(64 - SFRAME_INDEX_BITS - SFRAME_EPOCH_BITS)) - 1n;

export const SFRAME_BASE_KEY_LABEL = "SFrame 1.0 Base Key";

/** MLS-Exporter(label, context, length) of RFC 9420 §8.5, supplied by the MLS group. */
export type MlsExporter = (label: string, context: Uint8Array, length: number) => Promise<Uint8Array>;

const E = BigInt(SFRAME_EPOCH_BITS);
const SE = BigInt(SFRAME_INDEX_BITS + SFRAME_EPOCH_BITS);
const EPOCH_MASK = BigInt(MAX_SFRAME_EPOCHS - 1);
const INDEX_MASK = BigInt(MAX_SFRAME_LEAVES - 1);

export interface MlsKid {
  readonly context: bigint;
  readonly leafIndex: number;
  /** epoch mod 2^E */
  readonly epochBits: number;
}

function checkLeaf(leafIndex: number): void {
  if (!Number.isInteger(leafIndex) || leafIndex < 0 || leafIndex >= MAX_SFRAME_LEAVES) {
    throw new SFrameError("invalid-argument", `leaf index must be an integer in 0..${MAX_SFRAME_LEAVES - 1}`);
  }
}

export function mlsKid(leafIndex: number, epoch: bigint, context = 0n): bigint {
  checkLeaf(leafIndex);
  if (epoch < 0n) throw new SFrameError("invalid-argument", "negative epoch");
  if (context < 0n || context > MAX_KID_CONTEXT) throw new SFrameError("invalid-argument", "KID context outside its 44 bits");
  return (context << SE) | (BigInt(leafIndex) << E) | (epoch & EPOCH_MASK);
}

export function parseMlsKid(kid: bigint): MlsKid {
  if (kid < 0n || kid >= 1n << 64n) throw new SFrameError("invalid-argument", "KID outside 0..2^64-1");
  return { context: kid >> SE, leafIndex: Number((kid >> E) & INDEX_MASK), epochBits: Number(kid & EPOCH_MASK) };
}

const EMPTY = new Uint8Array(0);

/** base_key = MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk) */
export async function mlsBaseKey(suite: SFrameSuite, exporter: MlsExporter): Promise<Uint8Array> {
  const key = await exporter(SFRAME_BASE_KEY_LABEL, EMPTY, suite.Nk);
  if (key.length !== suite.Nk) throw new SFrameError("invalid-argument", `exporter returned ${key.length} bytes, want ${suite.Nk}`);
  return key;
}

export interface EpochKeyringOptions extends Omit<SFrameContextOptions, "resolveReceiveKey"> {
  readonly suite?: SFrameSuiteId;
  /** KID context this member sends with: one keyring per outbound stream. Default 0. */
  readonly sendContext?: bigint;
}

interface HeldEpoch {
  readonly epoch: bigint;
  readonly leafIndex: number;
  readonly baseKey: Uint8Array;
}

/**
 * The SFrame keys of the MLS epochs a member currently holds, at most 2^E. Adding an epoch installs
 * its receive side first (frames from every other member become decryptable on demand) and then
 * switches sending to it at once; adding an epoch whose low E bits equal a held one's drops that one
 * (§5.2 MUST), and retireEpoch drops an old epoch when its grace ends.
 */
export class EpochKeyring {
  [INSPECT](): string {
    return redacted("EpochKeyring", { sending: this.sending?.epoch });
  }

  readonly context: SFrameContext;
  private readonly sendContext: bigint;
  private readonly held = new Map<number, HeldEpoch>();
  private newest: bigint | undefined;
  private sending: { readonly epoch: bigint; readonly kid: bigint } | undefined;
  private adding: Promise<unknown> = Promise.resolve();

  constructor(options: EpochKeyringOptions = {}) {
    this.sendContext = options.sendContext ?? 0n;
    mlsKid(0, 0n, this.sendContext); // range-checks the context now
    this.context = new SFrameContext(options.suite ?? DEFAULT_SFRAME_SUITE, { ...options, resolveReceiveKey: (kid) => this.baseKeyFor(kid) });
  }

  /** The KID this member encrypts with now, or undefined before the first epoch or after retiring it. */
  get sendKid(): bigint | undefined {
    return this.sending?.kid;
  }

  /** Epochs held, oldest first. */
  get epochs(): bigint[] {
    return [...this.held.values()].map((e) => e.epoch).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The full epoch a KID belongs to, if that epoch is held. */
  epochOf(kid: bigint): bigint | undefined {
    return this.held.get(parseMlsKid(kid).epochBits)?.epoch;
  }

  /**
   * Takes the epoch's base key from the group's exporter (or as bytes already exported), with this
   * member's leaf index in that epoch. Epochs only move forward: an epoch not newer than the newest
   * held is refused, which also keeps a retired epoch's send CTRs from ever restarting.
   */
  addEpoch(epoch: bigint, leafIndex: number, source: MlsExporter | Uint8Array): Promise<void> {
    // One at a time: each step below relies on no other epoch arriving between its awaits.
    const run = this.adding.then(() => this.install(epoch, leafIndex, source));
    this.adding = run.catch(() => undefined);
    return run;
  }

  private async install(epoch: bigint, leafIndex: number, source: MlsExporter | Uint8Array): Promise<void> {
    checkLeaf(leafIndex);
    this.assertNewer(epoch);
    const baseKey = source instanceof Uint8Array ? source.slice() : await mlsBaseKey(this.context.suite, source);
    if (baseKey.length !== this.context.suite.Nk) throw new SFrameError("invalid-argument", `base key must be ${this.context.suite.Nk} bytes`);
    const bits = Number(epoch & EPOCH_MASK);
    if (this.held.has(bits)) this.dropKeys(bits);
    this.held.set(bits, { epoch, leafIndex, baseKey });
    this.newest = epoch;
    const kid = mlsKid(leafIndex, epoch, this.sendContext);
    await this.context.addSendKey(kid, baseKey);
    if (this.held.get(bits)?.epoch !== epoch) {
      this.context.removeKey(kid); // retired while its send key was being derived
      return;
    }
    const previous = this.sending;
    this.sending = { epoch, kid };
    if (previous) this.context.removeKey(previous.kid);
  }

  /** Drops an epoch's keys (its grace expired). Returns false if it was not held. */
  retireEpoch(epoch: bigint): boolean {
    const bits = Number(epoch & EPOCH_MASK);
    if (this.held.get(bits)?.epoch !== epoch) return false;
    this.held.delete(bits);
    this.dropKeys(bits);
    return true;
  }

  private assertNewer(epoch: bigint): void {
    if (epoch < 0n) throw new SFrameError("invalid-argument", "negative epoch");
    if (this.newest !== undefined && epoch <= this.newest) throw new SFrameError("stale-epoch", `epoch ${epoch} is not newer than ${this.newest}`);
  }

  private dropKeys(bits: number): void {
    this.context.removeKeys((kid) => Number(kid & EPOCH_MASK) === bits);
    if (this.sending && Number(this.sending.epoch & EPOCH_MASK) === bits) this.sending = undefined;
  }

  /**
   * Receive side: the epoch's base key for any other member's KID. Our own leaf's KIDs (any context)
   * are refused outright, not reported unknown: a key is for sending or receiving, never both (§4.4.1),
   * and a frame transform should drop such a frame rather than hold it for an epoch that will not help.
   */
  private baseKeyFor(kid: bigint): Uint8Array | undefined {
    const { leafIndex, epochBits } = parseMlsKid(kid);
    const e = this.held.get(epochBits);
    if (e && leafIndex === e.leafIndex) throw new SFrameError("key-in-use", "KID of this member's own leaf", kid);
    return e?.baseKey;
  }
}
