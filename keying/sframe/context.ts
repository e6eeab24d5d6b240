import { bytesEqual } from "../codec/bytes.js";
import { webCryptoAead, type AeadBackend, type AeadKey } from "./aead.js";
import { SFrameError } from "./errors.js";
import { decodeHeader, headerLength, MAX_UINT64, writeHeader } from "./header.js";
import { deriveKeySalt, KeyCache, sframeAad, sframeNonce } from "./keys.js";
import { assertReplayWidth, ReplayWindow } from "./replay.js";
import { DEFAULT_SFRAME_SUITE, sframeSuite, type SFrameSuite, type SFrameSuiteId } from "./suites.js";
import { INSPECT, redacted } from "../redact.js";

/**
 * An SFrame context (RFC 9605 §4.4 and Appendix A): KIDs mapped to keys that are each either for
 * sending or for receiving, never both (§4.4.1). Send keys carry the next CTR and are never evicted,
 * so a CTR cannot restart under a live key. Receive keys are installed explicitly or resolved on
 * demand from a base key (the MLS epoch keyring does this); resolved ones live in a bounded cache and
 * are cached only after a frame under them authenticated, so junk KIDs cannot evict real senders.
 */

export interface SFrameContextOptions {
  /** Default: WebCrypto. */
  readonly aead?: AeadBackend;
  /** CTRs accepted below the highest seen, per KID (power of two, 32..65536). Default 128. */
  readonly replayWindow?: number;
  /** Resolved receive keys kept at once. Default 1024. */
  readonly maxReceiveKeys?: number;
  /** base_key for a KID not installed explicitly, or undefined if the KID is unknown. May throw an SFrameError to refuse the KID. */
  readonly resolveReceiveKey?: (kid: bigint) => Uint8Array | undefined;
}

export interface SFrameDecrypted {
  readonly kid: bigint;
  readonly ctr: bigint;
  readonly plaintext: Uint8Array;
}

export const DEFAULT_REPLAY_WINDOW = 128;
export const DEFAULT_MAX_RECEIVE_KEYS = 1024;

interface KeyState {
  readonly salt: Uint8Array;
  readonly aead: AeadKey;
}

interface SendKey extends KeyState {
  next: bigint;
}

interface ReceiveKey extends KeyState {
  readonly window: ReplayWindow;
  /** The base key it came from: how a resolved key is recognised as still current. */
  readonly baseKey: Uint8Array;
}

const EMPTY = new Uint8Array(0);

function sameKey(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && bytesEqual(a, b);
}

export class SFrameContext {
  [INSPECT](): string {
    return redacted("SFrameContext");
  }

  readonly suite: SFrameSuite;
  private readonly aead: AeadBackend;
  private readonly allocate: (length: number) => Uint8Array;
  private readonly replayWidth: number;
  private readonly resolver: ((kid: bigint) => Uint8Array | undefined) | undefined;
  private readonly send = new Map<bigint, SendKey>();
  private readonly receive = new Map<bigint, ReceiveKey>();
  private readonly resolved: KeyCache<ReceiveKey>;

  constructor(suite: SFrameSuiteId = DEFAULT_SFRAME_SUITE, options: SFrameContextOptions = {}) {
    this.suite = sframeSuite(suite);
    this.aead = options.aead ?? webCryptoAead;
    this.allocate = this.aead.allocate?.bind(this.aead) ?? ((n) => new Uint8Array(n));
    this.replayWidth = options.replayWindow ?? DEFAULT_REPLAY_WINDOW;
    assertReplayWidth(this.replayWidth);
    this.resolver = options.resolveReceiveKey;
    this.resolved = new KeyCache(options.maxReceiveKeys ?? DEFAULT_MAX_RECEIVE_KEYS);
  }

  private async importKey(kid: bigint, baseKey: Uint8Array): Promise<KeyState> {
    const { key, salt } = await deriveKeySalt(this.suite, kid, baseKey);
    return { salt, aead: await this.aead.importKey(this.suite, key) };
  }

  private assertUnused(kid: bigint): void {
    if (this.send.has(kid) || this.receive.has(kid)) throw new SFrameError("key-in-use", "KID already has a key", kid);
  }

  /**
   * Installs a key to encrypt with. `firstCounter` lets a restored context resume above its last
   * stored CTR (§9.1); a fresh (base_key, KID) starts at 0.
   */
  async addSendKey(kid: bigint, baseKey: Uint8Array, firstCounter = 0n): Promise<void> {
    if (firstCounter < 0n || firstCounter > MAX_UINT64) throw new SFrameError("invalid-argument", "first CTR outside 0..2^64-1", kid);
    this.assertUnused(kid);
    const state = await this.importKey(kid, baseKey);
    this.assertUnused(kid); // another install may have won while this one derived
    this.resolved.delete(kid);
    this.send.set(kid, { ...state, next: firstCounter });
  }

  async addReceiveKey(kid: bigint, baseKey: Uint8Array): Promise<void> {
    this.assertUnused(kid);
    const state = await this.importKey(kid, baseKey);
    this.assertUnused(kid);
    this.resolved.delete(kid);
    this.receive.set(kid, { ...state, window: new ReplayWindow(this.replayWidth), baseKey });
  }

  /** Forgets every key (send, receive, resolved) whose KID matches. */
  removeKeys(match: (kid: bigint) => boolean): void {
    for (const map of [this.send, this.receive]) for (const kid of [...map.keys()]) if (match(kid)) map.delete(kid);
    this.resolved.deleteWhere(match);
  }

  removeKey(kid: bigint): void {
    this.removeKeys((k) => k === kid);
  }

  /** The CTR the next encrypt under `kid` will use, or undefined without a send key. */
  nextCounter(kid: bigint): bigint | undefined {
    return this.send.get(kid)?.next;
  }

  /**
   * encrypt(CTR, KID, metadata, plaintext) of §4.4.3 with the key's next CTR, which is consumed before
   * the AEAD runs so that no failure or concurrent call can reuse it. With `prependMetadata` the output
   * is metadata || header || ciphertext (the media frame layout), built in one buffer.
   */
  async encrypt(kid: bigint, plaintext: Uint8Array, metadata: Uint8Array = EMPTY, prependMetadata = false): Promise<Uint8Array> {
    const key = this.send.get(kid);
    if (!key) throw new SFrameError("unknown-kid", "no send key", kid);
    const ctr = key.next;
    if (ctr > MAX_UINT64) throw new SFrameError("counter-exhausted", "CTR space used up; install a new key", kid);
    key.next = ctr + 1n;
    const lead = prependMetadata ? metadata.length : 0;
    const h = headerLength(kid, ctr);
    const out = this.allocate(lead + h + plaintext.length + this.suite.Nt);
    if (lead > 0) out.set(metadata);
    writeHeader(out, lead, kid, ctr);
    const sealing = key.aead.seal(sframeNonce(key.salt, ctr), sframeAad(out.subarray(lead, lead + h), metadata), plaintext, out, lead + h);
    // A synchronous backend (node:crypto) returns nothing: skip the microtask an await would cost.
    if (sealing) await sealing;
    return out;
  }

  /** decrypt(metadata, sframe_ciphertext) of §4.4.4, with the replay check on the KID's CTR. */
  async decrypt(ciphertext: Uint8Array, metadata: Uint8Array = EMPTY): Promise<SFrameDecrypted> {
    const { kid, ctr, length } = decodeHeader(ciphertext);
    if (ciphertext.length - length < this.suite.Nt) throw new SFrameError("truncated", "no room for the authentication tag", kid);
    const known = this.receive.get(kid) ?? this.resolved.get(kid);
    const key = known ?? (await this.resolve(kid));
    if (!key.window.check(ctr)) throw new SFrameError("replay", `CTR ${ctr} already seen or too old`, kid);
    let plaintext: Uint8Array;
    try {
      const opened = key.aead.open(sframeNonce(key.salt, ctr), sframeAad(ciphertext.subarray(0, length), metadata), ciphertext.subarray(length));
      plaintext = opened instanceof Uint8Array ? opened : await opened;
    } catch (e) {
      // The backend does not know the KID; the caller needs it to name the sender.
      throw e instanceof SFrameError && e.kid === undefined ? new SFrameError(e.code, e.detail, kid) : e;
    }
    const held = known ?? this.adopt(kid, key);
    if (!held.window.accept(ctr)) throw new SFrameError("replay", `CTR ${ctr} already seen`, kid);
    return { kid, ctr, plaintext };
  }

  private async resolve(kid: bigint): Promise<ReceiveKey> {
    if (this.send.has(kid)) throw new SFrameError("key-in-use", "KID is one of our send keys", kid);
    const baseKey = this.resolver?.(kid);
    if (!baseKey) throw new SFrameError("unknown-kid", "no key for this KID", kid);
    return { ...(await this.importKey(kid, baseKey)), window: new ReplayWindow(this.replayWidth), baseKey };
  }

  /**
   * A resolved key becomes cached once a frame under it authenticated. If another frame resolved the
   * same base key meanwhile, its entry (and replay window) wins; if the base key stopped being
   * current (epoch dropped), the frame is refused.
   */
  private adopt(kid: bigint, key: ReceiveKey): ReceiveKey {
    const current = this.receive.get(kid) ?? this.resolved.get(kid);
    if (current) {
      if (sameKey(current.baseKey, key.baseKey)) return current;
    } else if (sameKey(this.resolver?.(kid), key.baseKey)) {
      this.resolved.set(kid, key);
      return key;
    }
    throw new SFrameError("unknown-kid", "key removed or replaced during decryption", kid);
  }
}
