import { utf8 } from "../codec/bytes.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import type { AeadKeyNonce } from "./key-schedule.js";
import { MlsValidationError } from "./errors.js";
import { left, leafToNode, right, root } from "./tree-math.js";
import { INSPECT, redacted } from "../redact.js";

/** §9.1: each leaf has one ratchet for handshake content (proposals, commits) and one for application data. */
export type RatchetType = "handshake" | "application";

/** A key and nonce of one ratchet generation. */
export interface GenerationKey extends AeadKeyNonce {
  readonly generation: number;
}

/**
 * Bounds on what a receiver keeps for out-of-order delivery (§9.2 lets a member keep unconsumed keys "for
 * some reasonable amount of time"). Both bound work and memory a sender can cause.
 */
export interface SecretTreeLimits {
  /** Largest jump past the next expected generation a receiver will ratchet forward. */
  readonly maxForwardDistance: number;
  /** Skipped, not yet used keys kept per ratchet; the oldest are dropped first. */
  readonly maxRetainedKeys: number;
}

export const DEFAULT_SECRET_TREE_LIMITS: SecretTreeLimits = { maxForwardDistance: 1000, maxRetainedKeys: 256 };

/** A hash ratchet's persisted state: next generation, ratchet_secret_[next] (absent when exhausted), retained keys. */
export interface HashRatchetState {
  readonly next: number;
  readonly secret: Uint8Array | undefined;
  readonly retained: readonly (readonly [number, AeadKeyNonce])[];
}

/** A secret tree's persisted state (see SecretTree.exportState). */
export interface SecretTreeState {
  readonly leafCount: number;
  readonly nodes: readonly (readonly [number, Uint8Array])[];
  readonly ratchets: readonly { readonly leaf: number; readonly handshake: HashRatchetState; readonly application: HashRatchetState }[];
}

const MAX_GENERATION = 0xffffffff;

/** Runs async sections one after the other, so a ratchet is never advanced by two callers at once. */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(section: () => Promise<T>): Promise<T> {
    const result = this.tail.then(section);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** §9.1: one sender ratchet. `secret` is ratchet_secret_[next]; keys of skipped generations sit in `retained`. */
class HashRatchet {
  readonly lock = new Serial();
  private next = 0;
  private retained = new Map<number, AeadKeyNonce>();

  constructor(
    private readonly suite: CipherSuite,
    private secret: Uint8Array | undefined,
    private readonly limits: SecretTreeLimits,
  ) {}

  private async keyAt(secret: Uint8Array, generation: number): Promise<AeadKeyNonce> {
    const { Nk, Nn } = this.suite.params;
    const [key, nonce] = await Promise.all([
      this.suite.deriveTreeSecret(secret, "key", generation, Nk),
      this.suite.deriveTreeSecret(secret, "nonce", generation, Nn),
    ]);
    return { key, nonce };
  }

  private nextSecret(secret: Uint8Array, generation: number): Promise<Uint8Array> {
    return this.suite.deriveTreeSecret(secret, "secret", generation, this.suite.params.Nh);
  }

  /** The sender's next unused generation; consumed as it is handed out. */
  async take(): Promise<GenerationKey> {
    const secret = this.secret;
    if (!secret) throw new MlsValidationError("ratchet-exhausted", "no generation left in this ratchet");
    const generation = this.next;
    const key = await this.keyAt(secret, generation);
    this.advanceTo(generation === MAX_GENERATION ? undefined : await this.nextSecret(secret, generation), generation + 1);
    return { generation, ...key };
  }

  /**
   * The key of `generation`, handed to `use`; the key is consumed (and the ratchet moves) only if `use`
   * resolves, so a message that fails to authenticate leaves the ratchet as it was.
   */
  async open<T>(generation: number, use: (key: AeadKeyNonce) => Promise<T>): Promise<T> {
    if (generation < this.next) {
      const key = this.retained.get(generation);
      if (!key) throw new MlsValidationError("generation-consumed", `generation ${generation} was already used or dropped`);
      const result = await use(key);
      this.retained.delete(generation);
      return result;
    }
    if (generation - this.next > this.limits.maxForwardDistance) {
      throw new MlsValidationError("generation-too-far", `generation ${generation} is more than ${this.limits.maxForwardDistance} past ${this.next}`);
    }
    let secret = this.secret;
    if (!secret) throw new MlsValidationError("ratchet-exhausted", "no generation left in this ratchet");
    // Keys for generations skipped now are derived only if they would survive the retention bound.
    const keepFrom = generation - this.limits.maxRetainedKeys;
    const skipped = new Map<number, AeadKeyNonce>();
    for (let j = this.next; j < generation; j++) {
      if (j >= keepFrom) skipped.set(j, await this.keyAt(secret, j));
      secret = await this.nextSecret(secret, j);
    }
    const key = await this.keyAt(secret, generation);
    const after = generation === MAX_GENERATION ? undefined : await this.nextSecret(secret, generation);
    const result = await use(key);
    for (const [j, k] of skipped) this.retained.set(j, k);
    this.advanceTo(after, generation + 1);
    this.evictOldest();
    return result;
  }

  /** The ratchet's state for persistence (SecretTree.exportState). */
  exportState(): HashRatchetState {
    return { next: this.next, secret: this.secret?.slice(), retained: [...this.retained].map(([g, k]) => [g, { key: k.key.slice(), nonce: k.nonce.slice() }]) };
  }

  static fromState(suite: CipherSuite, state: HashRatchetState, limits: SecretTreeLimits): HashRatchet {
    const r = new HashRatchet(suite, state.secret?.slice(), limits);
    r.next = state.next;
    for (const [g, k] of state.retained) r.retained.set(g, { key: k.key.slice(), nonce: k.nonce.slice() });
    return r;
  }

  private advanceTo(secret: Uint8Array | undefined, next: number): void {
    this.secret?.fill(0);
    this.secret = secret;
    this.next = next;
  }

  private evictOldest(): void {
    if (this.retained.size <= this.limits.maxRetainedKeys) return;
    // Generations enter in increasing order, so the Map's insertion order is oldest first.
    for (const generation of this.retained.keys()) {
      if (this.retained.size <= this.limits.maxRetainedKeys) break;
      this.retained.delete(generation);
    }
  }
}

/**
 * RFC 9420 §9: the secret tree of one epoch, rooted at encryption_secret. Node secrets are derived lazily
 * on the path to the leaf a message needs, and each node secret is deleted once both children exist, so
 * a 1000-member group derives about log2(n) nodes per active sender, never the whole tree.
 */
export class SecretTree {
  [INSPECT](): string {
    return redacted("SecretTree", { leafCount: this.leafCount });
  }

  /** Unconsumed node secrets by node index; starts with the root only. */
  private readonly nodes = new Map<number, Uint8Array>();
  private readonly ratchets = new Map<number, { handshake: HashRatchet; application: HashRatchet }>();
  private readonly lock = new Serial();
  readonly limits: SecretTreeLimits;

  constructor(
    private readonly suite: CipherSuite,
    encryptionSecret: Uint8Array,
    readonly leafCount: number,
    limits: Partial<SecretTreeLimits> = {},
  ) {
    if (!Number.isInteger(leafCount) || leafCount < 1 || leafCount > 0x40000000) throw new RangeError(`invalid leaf count ${leafCount}`);
    this.limits = { ...DEFAULT_SECRET_TREE_LIMITS, ...limits };
    for (const [name, v] of Object.entries(this.limits)) if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`invalid ${name} ${v}`);
    this.nodes.set(root(leafCount), encryptionSecret.slice());
  }

  /** Encrypting: the sender's next generation of its own ratchet, consumed at once. */
  async nextKey(leafIndex: number, type: RatchetType): Promise<GenerationKey> {
    const ratchet = await this.ratchet(leafIndex, type);
    return ratchet.lock.run(() => ratchet.take());
  }

  /**
   * Decrypting: runs `use` with the key of (leaf, type, generation). The key is deleted once `use`
   * resolves; if `use` rejects (the message did not authenticate) it stays available. Throws an
   * MlsValidationError "generation-consumed" for a generation already used or dropped from the window,
   * "generation-too-far" beyond `maxForwardDistance`, "invalid-leaf-index" outside the tree.
   * Nothing in the tree changes unless `use` resolves. `use` must not call back into this tree (for a
   * sender's first message it runs while the tree's own lock is held).
   */
  async withKey<T>(leafIndex: number, type: RatchetType, generation: number, use: (key: AeadKeyNonce) => Promise<T>): Promise<T> {
    if (!Number.isInteger(generation) || generation < 0 || generation > MAX_GENERATION) {
      throw new MlsValidationError("generation-too-far", `generation ${generation} is not a uint32`);
    }
    this.checkLeaf(leafIndex);
    const existing = this.ratchets.get(leafIndex)?.[type];
    if (existing) return existing.lock.run(() => existing.open(generation, use));
    // A sender's first message: its ratchets are derived aside and kept only if `use` succeeds, so a
    // message that fails to authenticate does not even split the tree's node secrets.
    return this.lock.run(async () => {
      const pair = this.ratchets.get(leafIndex);
      if (pair) return pair[type].lock.run(() => pair[type].open(generation, use));
      const staged = await this.stageRatchets(leafIndex);
      const result = await staged.pair[type].open(generation, use);
      staged.adopt();
      return result;
    });
  }

  private checkLeaf(leafIndex: number): void {
    if (!Number.isInteger(leafIndex) || leafIndex < 0 || leafIndex >= this.leafCount) {
      throw new MlsValidationError("invalid-leaf-index", `leaf ${leafIndex} is outside a tree of ${this.leafCount} leaves`);
    }
  }

  private async ratchet(leafIndex: number, type: RatchetType): Promise<HashRatchet> {
    this.checkLeaf(leafIndex);
    const existing = this.ratchets.get(leafIndex);
    if (existing) return existing[type];
    return this.lock.run(async () => {
      let pair = this.ratchets.get(leafIndex);
      if (!pair) {
        const staged = await this.stageRatchets(leafIndex);
        staged.adopt();
        pair = staged.pair;
      }
      return pair[type];
    });
  }

  /** A leaf's two ratchets, derived without changing the tree; `adopt` stores them and deletes the secrets used up. */
  private async stageRatchets(leafIndex: number): Promise<{ pair: { handshake: HashRatchet; application: HashRatchet }; adopt: () => void }> {
    const { secret: leafSecret, adopt } = await this.stageLeafSecret(leafIndex);
    const { Nh } = this.suite.params;
    const empty = new Uint8Array(0);
    const [handshake, application] = await Promise.all([
      this.suite.expandWithLabel(leafSecret, "handshake", empty, Nh),
      this.suite.expandWithLabel(leafSecret, "application", empty, Nh),
    ]);
    const pair = { handshake: new HashRatchet(this.suite, handshake, this.limits), application: new HashRatchet(this.suite, application, this.limits) };
    return {
      pair,
      adopt: () => {
        adopt();
        leafSecret.fill(0);
        this.ratchets.set(leafIndex, pair);
      },
    };
  }

  /**
   * Everything this tree still holds (unconsumed node secrets, each started ratchet with its retained
   * keys), so a persisted group resumes exactly where it stopped. Call it between operations.
   */
  exportState(): SecretTreeState {
    return {
      leafCount: this.leafCount,
      nodes: [...this.nodes].map(([x, secret]) => [x, secret.slice()]),
      ratchets: [...this.ratchets].map(([leaf, r]) => ({ leaf, handshake: r.handshake.exportState(), application: r.application.exportState() })),
    };
  }

  static fromState(suite: CipherSuite, state: SecretTreeState, limits: Partial<SecretTreeLimits> = {}): SecretTree {
    const tree = new SecretTree(suite, new Uint8Array(0), state.leafCount, limits);
    tree.nodes.clear();
    for (const [x, secret] of state.nodes) tree.nodes.set(x, secret.slice());
    for (const r of state.ratchets) {
      tree.ratchets.set(r.leaf, { handshake: HashRatchet.fromState(suite, r.handshake, tree.limits), application: HashRatchet.fromState(suite, r.application, tree.limits) });
    }
    return tree;
  }

  /**
   * Walks from the root to the leaf, splitting each node still held into its children. Nothing changes
   * until `adopt`, which keeps the new children and deletes (and zeroes) every secret used up.
   */
  private async stageLeafSecret(leafIndex: number): Promise<{ secret: Uint8Array; adopt: () => void }> {
    const target = leafToNode(leafIndex);
    const derived = new Map<number, Uint8Array>();
    const consumed = new Set<number>();
    let node = root(this.leafCount);
    while (node !== target) {
      const secret = derived.get(node) ?? this.nodes.get(node);
      const l = left(node);
      const r = right(node);
      if (secret) {
        const { Nh } = this.suite.params;
        const [ls, rs] = await Promise.all([
          this.suite.expandWithLabel(secret, "tree", LEFT, Nh),
          this.suite.expandWithLabel(secret, "tree", RIGHT, Nh),
        ]);
        derived.set(l, ls);
        derived.set(r, rs);
        derived.delete(node);
        consumed.add(node);
      }
      node = target < node ? l : r;
    }
    const secret = derived.get(target) ?? this.nodes.get(target);
    // Unreachable while the ratchets map and the node map stay in step; kept as a typed failure.
    if (!secret) throw new MlsValidationError("generation-consumed", `leaf ${leafIndex} secret already consumed`);
    derived.delete(target);
    consumed.add(target);
    return {
      secret,
      adopt: () => {
        for (const x of consumed) {
          const held = this.nodes.get(x);
          if (held && held !== secret) held.fill(0);
          this.nodes.delete(x);
        }
        for (const [x, s] of derived) this.nodes.set(x, s);
      },
    };
  }
}

const LEFT = utf8("left");
const RIGHT = utf8("right");
