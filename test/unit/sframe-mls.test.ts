import { describe, expect, it } from "vitest";
import { bytesEqual, utf8 } from "../../keying/codec/bytes.js";
import {
  decodeHeader,
  EpochKeyring,
  headerLength,
  MAX_KID_CONTEXT,
  MAX_SFRAME_EPOCHS,
  MAX_UINT64,
  mlsBaseKey,
  mlsKid,
  parseMlsKid,
  SFRAME_BASE_KEY_LABEL,
  SFrameError,
  sframeSuite,
  webCryptoAead,
  type AeadBackend,
  type MlsExporter,
} from "../../keying/sframe/index.js";
import { rejection, thrown } from "./expect-error.js";
import { realExporter } from "./sframe-helpers.js";

/** A distinct 16-byte base_key per epoch, as every member of that epoch would export it. */
const baseKey = (epoch: bigint): Uint8Array => utf8(`epoch ${epoch}`.padEnd(16, "."));

/** Counts key imports: one per KID derivation, so it shows when a key came from the cache. */
function countingAead(): AeadBackend & { imports: number } {
  const backend = {
    name: "counting",
    imports: 0,
    importKey: (suite: Parameters<AeadBackend["importKey"]>[0], key: Uint8Array) => {
      backend.imports++;
      return webCryptoAead.importKey(suite, key);
    },
  };
  return backend;
}

async function member(leaf: number, epochs: bigint[], options: ConstructorParameters<typeof EpochKeyring>[0] = {}): Promise<EpochKeyring> {
  const k = new EpochKeyring(options);
  for (const e of epochs) await k.addEpoch(e, leaf, baseKey(e));
  return k;
}

const send = (k: EpochKeyring, text = "frame"): Promise<Uint8Array> => k.context.encrypt(k.sendKid!, utf8(text));

describe("MLS KID layout (RFC 9605 §5.2, E = 4, S = 16)", () => {
  it("packs context, leaf index and the epoch's low 4 bits", () => {
    expect(mlsKid(0, 0n)).toBe(0n);
    expect(mlsKid(0, 7n)).toBe(7n);
    expect(mlsKid(1, 0n)).toBe(0x10n);
    expect(mlsKid(3, 0x25n)).toBe(0x35n); // epoch 0x25 mod 16 = 5
    expect(mlsKid(0xabcd, 0xfn, 0x123n)).toBe((0x123n << 20n) | (0xabcdn << 4n) | 0xfn);
    expect(mlsKid(0xffff, MAX_UINT64, MAX_KID_CONTEXT)).toBe(MAX_UINT64);
    expect(parseMlsKid((0x123n << 20n) | (0xabcdn << 4n) | 0xen)).toEqual({ context: 0x123n, leafIndex: 0xabcd, epochBits: 0xe });
  });

  it("round-trips through parseMlsKid", () => {
    for (const [leaf, epoch, context] of [
      [0, 0n, 0n],
      [5, 1234567n, 0n],
      [65535, 31n, 1n],
      [42, 16n, MAX_KID_CONTEXT],
    ] as const) {
      const kid = mlsKid(leaf, epoch, context);
      expect(parseMlsKid(kid)).toEqual({ context, leafIndex: leaf, epochBits: Number(epoch % 16n) });
    }
  });

  it("keeps the KID small: in the config byte for leaf 0 epochs 0-7, one byte up to leaf 15, two up to leaf 4095", () => {
    const kidBytes = (leaf: number, epoch: bigint) => headerLength(mlsKid(leaf, epoch), 0n) - 1;
    expect(kidBytes(0, 7n)).toBe(0);
    expect(kidBytes(0, 8n)).toBe(1);
    expect(kidBytes(15, 15n)).toBe(1);
    expect(kidBytes(16, 0n)).toBe(2);
    expect(kidBytes(4095, 15n)).toBe(2);
    expect(kidBytes(4096, 0n)).toBe(3);
  });

  it("refuses values outside their fields", () => {
    expect(thrown(SFrameError, () => mlsKid(65536, 0n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => mlsKid(-1, 0n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => mlsKid(1.5, 0n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => mlsKid(0, -1n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => mlsKid(0, 0n, MAX_KID_CONTEXT + 1n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => mlsKid(0, 0n, -1n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => parseMlsKid(1n << 64n)).code).toBe("invalid-argument");
    expect(thrown(SFrameError, () => new EpochKeyring({ sendContext: MAX_KID_CONTEXT + 1n })).code).toBe("invalid-argument");
  });
});

describe("base_key from the MLS exporter", () => {
  it("asks for MLS-Exporter(\"SFrame 1.0 Base Key\", \"\", Nk) and checks the length", async () => {
    const calls: [string, Uint8Array, number][] = [];
    const exporter: MlsExporter = async (label, context, length) => {
      calls.push([label, context, length]);
      return new Uint8Array(length).fill(1);
    };
    expect(await mlsBaseKey(sframeSuite(4), exporter)).toHaveLength(16);
    expect(await mlsBaseKey(sframeSuite(1), exporter)).toHaveLength(48);
    expect(await mlsBaseKey(sframeSuite(5), exporter)).toHaveLength(32);
    expect(calls.map(([l, c, n]) => [l, c.length, n])).toEqual([
      [SFRAME_BASE_KEY_LABEL, 0, 16],
      [SFRAME_BASE_KEY_LABEL, 0, 48],
      [SFRAME_BASE_KEY_LABEL, 0, 32],
    ]);
    expect(SFRAME_BASE_KEY_LABEL).toBe("SFrame 1.0 Base Key");
    expect((await rejection(SFrameError, mlsBaseKey(sframeSuite(4), async () => new Uint8Array(15)))).code).toBe("invalid-argument");
  });

  it("keys two members from a real MLS exporter secret, each with its own key and CTR space", async () => {
    const exporter = await realExporter(9);
    const alice = new EpochKeyring();
    const bob = new EpochKeyring();
    await alice.addEpoch(3n, 0, exporter);
    await bob.addEpoch(3n, 1, exporter);
    expect(alice.sendKid).toBe(mlsKid(0, 3n));
    expect(bob.sendKid).toBe(mlsKid(1, 3n));
    const a = await send(alice, "from alice");
    const b = await send(bob, "from bob");
    // Same CTR 0 under one base_key, yet different keys: the KID is in the derivation labels.
    expect(decodeHeader(a).ctr).toBe(0n);
    expect(decodeHeader(b).ctr).toBe(0n);
    expect(bytesEqual(a.subarray(2, 18), b.subarray(2, 18))).toBe(false);
    expect((await bob.context.decrypt(a)).plaintext).toEqual(utf8("from alice"));
    expect((await alice.context.decrypt(b)).plaintext).toEqual(utf8("from bob"));
  });
});

describe("EpochKeyring", () => {
  it("decrypts other members, never its own leaf's KIDs", async () => {
    const alice = await member(0, [1n]);
    const bob = await member(1, [1n]);
    const frame = await send(alice);
    const out = await bob.context.decrypt(frame);
    expect(parseMlsKid(out.kid)).toEqual({ context: 0n, leafIndex: 0, epochBits: 1 });
    expect(bob.epochOf(out.kid)).toBe(1n);
    // Her own frames, under her send KID or any other KID of her leaf, are refused (not held as unknown).
    expect((await rejection(SFrameError, alice.context.decrypt(frame))).code).toBe("key-in-use");
    const aliceVideo = await member(0, [1n], { sendContext: 1n });
    expect((await rejection(SFrameError, alice.context.decrypt(await send(aliceVideo)))).code).toBe("key-in-use");
  });

  it("signals unknown-kid for a future epoch, then decrypts the held frame once the epoch arrives", async () => {
    const alice = await member(0, [4n]);
    const bob = await member(1, [4n]);
    await alice.addEpoch(5n, 0, baseKey(5n));
    const early = await send(alice, "epoch 5");
    const e = await rejection(SFrameError, bob.context.decrypt(early));
    expect(e.code).toBe("unknown-kid");
    expect(e.kid).toBe(mlsKid(0, 5n));
    await bob.addEpoch(5n, 1, baseKey(5n));
    expect((await bob.context.decrypt(early)).plaintext).toEqual(utf8("epoch 5"));
  });

  it("switches sending to the newest epoch at once and keeps receiving the old one until it is retired", async () => {
    const alice = await member(0, [1n]);
    const bob = await member(1, [1n]);
    const old1 = await send(alice, "old 1");
    const old2 = await send(alice, "old 2");
    await alice.addEpoch(2n, 0, baseKey(2n));
    await bob.addEpoch(2n, 1, baseKey(2n));
    expect(alice.sendKid).toBe(mlsKid(0, 2n));
    expect(alice.context.nextCounter(mlsKid(0, 1n))).toBeUndefined(); // the old send key is gone
    expect(bob.epochs).toEqual([1n, 2n]);
    expect((await bob.context.decrypt(old1)).plaintext).toEqual(utf8("old 1"));
    expect((await bob.context.decrypt(await send(alice, "new"))).plaintext).toEqual(utf8("new"));
    expect(bob.retireEpoch(1n)).toBe(true);
    expect(bob.retireEpoch(1n)).toBe(false);
    expect(bob.epochs).toEqual([2n]);
    // Its resolved (cached) key went with it.
    expect((await rejection(SFrameError, bob.context.decrypt(old2))).code).toBe("unknown-kid");
  });

  it("holds at most 2^E epochs: a new epoch drops the old one with the same low bits, and its cached keys", async () => {
    expect(MAX_SFRAME_EPOCHS).toBe(16);
    const epochs = Array.from({ length: 16 }, (_, i) => BigInt(i));
    const alice = await member(0, epochs);
    const bob = await member(1, epochs);
    expect(bob.epochs).toEqual(epochs);
    // An epoch-15 frame authenticated, so Bob caches Alice's epoch-15 key. A second one is kept for later.
    await bob.context.decrypt(await send(alice, "e15 a"));
    const e15 = await send(alice, "e15 b");

    await bob.addEpoch(31n, 1, baseKey(31n)); // 31 mod 16 = 15
    expect(bob.epochs).toEqual([...epochs.slice(0, 15), 31n]);
    expect(bob.epochOf(mlsKid(0, 15n))).toBe(31n);
    // Same KID as epoch 31's, but epoch 15's key is gone: the frame cannot authenticate under epoch 31.
    expect((await rejection(SFrameError, bob.context.decrypt(e15))).code).toBe("auth-failed");
    await alice.addEpoch(31n, 0, baseKey(31n));
    expect((await bob.context.decrypt(await send(alice, "e31"))).plaintext).toEqual(utf8("e31"));

    await bob.addEpoch(32n, 1, baseKey(32n)); // drops epoch 0
    expect(bob.epochs).toHaveLength(16);
    expect(bob.epochs[0]).toBe(1n);
  });

  it("only moves forward, one epoch at a time", async () => {
    const k = await member(0, [5n]);
    expect((await rejection(SFrameError, k.addEpoch(5n, 0, baseKey(5n)))).code).toBe("stale-epoch");
    expect((await rejection(SFrameError, k.addEpoch(4n, 0, baseKey(4n)))).code).toBe("stale-epoch");
    expect((await rejection(SFrameError, k.addEpoch(6n, 0, new Uint8Array(15)))).code).toBe("invalid-argument");
    expect((await rejection(SFrameError, k.addEpoch(6n, 70000, baseKey(6n)))).code).toBe("invalid-argument");
    expect(k.epochs).toEqual([5n]);
    // Not awaited in between: the second still lands after the first.
    const both = Promise.all([k.addEpoch(6n, 0, baseKey(6n)), k.addEpoch(7n, 0, baseKey(7n))]);
    await both;
    expect(k.sendKid).toBe(mlsKid(0, 7n));
    expect(k.epochs).toEqual([5n, 6n, 7n]);
  });

  it("never reuses a CTR under one key: counts up within an epoch, and an epoch cannot be installed twice", async () => {
    const alice = await member(0, [1n]);
    const ctrs = await Promise.all(Array.from({ length: 20 }, () => send(alice).then((f) => decodeHeader(f).ctr)));
    expect(new Set(ctrs).size).toBe(20);
    await alice.addEpoch(2n, 0, baseKey(2n));
    expect(decodeHeader(await send(alice)).ctr).toBe(0n); // a new key starts over
    alice.retireEpoch(2n);
    expect(alice.sendKid).toBeUndefined();
    expect((await rejection(SFrameError, alice.addEpoch(2n, 0, baseKey(2n)))).code).toBe("stale-epoch");
  });

  it("gives each outbound stream of a member its own KID, hence its own CTR space and replay window", async () => {
    const audio = await member(2, [1n], { sendContext: 0n });
    const video = await member(2, [1n], { sendContext: 1n });
    expect(audio.sendKid).not.toBe(video.sendKid);
    expect(parseMlsKid(video.sendKid!)).toEqual({ context: 1n, leafIndex: 2, epochBits: 1 });
    const rx = await member(0, [1n]);
    const a = await send(audio, "a");
    const v = await send(video, "v");
    expect(decodeHeader(a).ctr).toBe(decodeHeader(v).ctr);
    expect((await rx.context.decrypt(a)).plaintext).toEqual(utf8("a"));
    expect((await rx.context.decrypt(v)).plaintext).toEqual(utf8("v"));
    expect((await rejection(SFrameError, rx.context.decrypt(a))).code).toBe("replay");
  });

  it("keeps a replay window per sender", async () => {
    const alice = await member(0, [1n]);
    const carol = await member(2, [1n]);
    const bob = await member(1, [1n], { replayWindow: 32 });
    const fromAlice = [];
    for (let i = 0; i < 40; i++) fromAlice.push(await send(alice, `a${i}`));
    const c0 = await send(carol, "c0");
    for (const f of fromAlice.slice(1)) await bob.context.decrypt(f);
    expect((await rejection(SFrameError, bob.context.decrypt(fromAlice[0]!))).code).toBe("replay"); // 39 behind in a 32 window
    expect((await rejection(SFrameError, bob.context.decrypt(fromAlice[20]!))).code).toBe("replay"); // seen
    expect((await bob.context.decrypt(c0)).ctr).toBe(0n); // Carol's CTR 0 is her own
  });

  it("bounds the per-KID key cache", async () => {
    const epochs = [1n];
    const senders = await Promise.all([0, 2, 3].map((leaf) => member(leaf, epochs)));
    const frames = async () => Promise.all(senders.map((s) => send(s)));

    const small = countingAead();
    const bounded = await member(1, epochs, { aead: small, maxReceiveKeys: 2 });
    const roomy = countingAead();
    const ample = await member(1, epochs, { aead: roomy, maxReceiveKeys: 3 });
    for (let round = 0; round < 4; round++) {
      for (const f of await frames()) {
        await bounded.context.decrypt(f);
        await ample.context.decrypt(f);
      }
    }
    // Own send key (1 import) + each sender once: the cache holds all three.
    expect(roomy.imports).toBe(1 + 3);
    // Round-robin over three senders with room for two: least-recently-used eviction makes every frame
    // derive its key again, and decryption still works.
    expect(small.imports).toBe(1 + 3 * 4);
  });
});
