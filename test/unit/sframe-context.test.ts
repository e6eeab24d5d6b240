import { beforeAll, describe, expect, it } from "vitest";
import { fromHex, toHex, utf8 } from "../../keying/codec/bytes.js";
import {
  decodeHeader,
  KeyCache,
  MAX_UINT64,
  nodeCryptoAead,
  ReplayWindow,
  SFrameContext,
  SFrameError,
  SFRAME_SUITE_IDS,
  sframeNonce,
  webCryptoAead,
  type AeadBackend,
} from "../../keying/sframe/index.js";
import { rejection } from "./expect-error.js";

const BASE = utf8("0123456789abcdef0123456789abcdef0123456789abcdef");
const base = (n: number): Uint8Array => BASE.map((b) => b ^ n);

async function pair(suite: 1 | 2 | 3 | 4 | 5 = 4, kid = 9n, options: ConstructorParameters<typeof SFrameContext>[1] = {}) {
  const sender = new SFrameContext(suite, options);
  const receiver = new SFrameContext(suite, options);
  await sender.addSendKey(kid, BASE);
  await receiver.addReceiveKey(kid, BASE);
  return { sender, receiver };
}

let node: AeadBackend;
beforeAll(async () => {
  node = await nodeCryptoAead();
});

describe("SFrameContext", () => {
  for (const suite of SFRAME_SUITE_IDS) {
    it(`round-trips under suite ${suite} on both backends, which agree byte for byte`, async () => {
      const outs: Uint8Array[] = [];
      for (const aead of [webCryptoAead, node]) {
        const { sender, receiver } = await pair(suite, 0x1234n, { aead });
        const pt = utf8("a media frame");
        const md = utf8("metadata");
        const ct = await sender.encrypt(0x1234n, pt, md);
        outs.push(ct);
        const out = await receiver.decrypt(ct, md);
        expect(out.plaintext).toEqual(pt);
        expect(out.kid).toBe(0x1234n);
        expect(out.ctr).toBe(0n);
      }
      expect(outs[0]).toEqual(outs[1]);
    });
  }

  it("also decrypts across backends", async () => {
    const sender = new SFrameContext(1, { aead: node });
    const receiver = new SFrameContext(1, { aead: webCryptoAead });
    await sender.addSendKey(3n, BASE);
    await receiver.addReceiveKey(3n, BASE);
    const ct = await sender.encrypt(3n, utf8("x"));
    expect((await receiver.decrypt(ct)).plaintext).toEqual(utf8("x"));
  });

  it("uses each CTR once, counting up, even under concurrent encrypts", async () => {
    const { sender } = await pair();
    const cts = await Promise.all(Array.from({ length: 64 }, () => sender.encrypt(9n, utf8("f"))));
    const ctrs = cts.map((c) => decodeHeader(c).ctr);
    expect(new Set(ctrs).size).toBe(64);
    expect([...ctrs].sort((a, b) => Number(a - b))).toEqual(Array.from({ length: 64 }, (_, i) => BigInt(i)));
    expect(sender.nextCounter(9n)).toBe(64n);
  });

  it("fails closed when the CTR space is used up", async () => {
    const sender = new SFrameContext(4);
    await sender.addSendKey(1n, BASE, MAX_UINT64);
    const last = await sender.encrypt(1n, utf8("last"));
    expect(decodeHeader(last).ctr).toBe(MAX_UINT64);
    expect((await rejection(SFrameError, sender.encrypt(1n, utf8("one too many")))).code).toBe("counter-exhausted");
    expect((await rejection(SFrameError, sender.encrypt(1n, utf8("still")))).code).toBe("counter-exhausted");
  });

  it("starts from a restored CTR", async () => {
    const sender = new SFrameContext(4);
    await sender.addSendKey(1n, BASE, 1000n);
    expect(decodeHeader(await sender.encrypt(1n, utf8("x"))).ctr).toBe(1000n);
  });

  it("reports unknown KIDs with the KID", async () => {
    const { sender, receiver } = await pair();
    const e = await rejection(SFrameError, sender.encrypt(10n, utf8("x")));
    expect(e.code).toBe("unknown-kid");
    const other = new SFrameContext(4);
    await other.addSendKey(77n, BASE);
    const e2 = await rejection(SFrameError, receiver.decrypt(await other.encrypt(77n, utf8("x"))));
    expect(e2.code).toBe("unknown-kid");
    expect(e2.kid).toBe(77n);
  });

  it("rejects tampered ciphertext, header and metadata", async () => {
    const { sender, receiver } = await pair(4, 9n);
    const md = utf8("prefix");
    const ct = await sender.encrypt(9n, utf8("hello frame"), md);
    // Header 0x80 0x09 (KID 9 in one byte, CTR 0): byte 0 bit 0 makes it CTR 1; byte 1 is the KID.
    for (const i of [0, 2, 5, ct.length - 1]) {
      const bad = ct.slice();
      bad[i]! ^= i === 0 ? 0x01 : 0x80;
      expect((await rejection(SFrameError, receiver.decrypt(bad, md))).code).toBe("auth-failed");
    }
    const otherKid = ct.slice();
    otherKid[1] = 0x0a;
    expect((await rejection(SFrameError, receiver.decrypt(otherKid, md))).code).toBe("unknown-kid");
    const wrongMetadata = await rejection(SFrameError, receiver.decrypt(ct, utf8("prefiX")));
    expect(wrongMetadata.code).toBe("auth-failed");
    expect(wrongMetadata.kid).toBe(9n); // names the sender's KID for the caller's stats
    expect((await rejection(SFrameError, receiver.decrypt(ct))).code).toBe("auth-failed");
    // The failures consumed nothing: the genuine frame still decrypts.
    expect((await receiver.decrypt(ct, md)).plaintext).toEqual(utf8("hello frame"));
  });

  it("rejects short tags on the CTR+HMAC suites too", async () => {
    const { sender, receiver } = await pair(3, 9n);
    const ct = await sender.encrypt(9n, utf8("short tag"));
    const bad = ct.slice();
    bad[bad.length - 1]! ^= 1;
    expect((await rejection(SFrameError, receiver.decrypt(bad))).code).toBe("auth-failed");
    expect((await rejection(SFrameError, receiver.decrypt(ct.subarray(0, 4)))).code).toBe("truncated");
  });

  it("rejects a ciphertext too short for its tag", async () => {
    const { sender, receiver } = await pair();
    const ct = await sender.encrypt(9n, new Uint8Array(0));
    expect((await rejection(SFrameError, receiver.decrypt(ct.subarray(0, ct.length - 1)))).code).toBe("truncated");
    expect((await rejection(SFrameError, receiver.decrypt(new Uint8Array(0)))).code).toBe("truncated");
  });

  it("never decrypts with a send key, nor installs one KID twice", async () => {
    const ctx = new SFrameContext(4);
    await ctx.addSendKey(5n, BASE);
    const ct = await ctx.encrypt(5n, utf8("mine"));
    expect((await rejection(SFrameError, ctx.decrypt(ct))).code).toBe("key-in-use");
    expect((await rejection(SFrameError, ctx.addReceiveKey(5n, BASE))).code).toBe("key-in-use");
    expect((await rejection(SFrameError, ctx.addSendKey(5n, BASE))).code).toBe("key-in-use");
  });

  it("forgets removed keys", async () => {
    const { sender, receiver } = await pair();
    const ct = await sender.encrypt(9n, utf8("x"));
    receiver.removeKey(9n);
    expect((await rejection(SFrameError, receiver.decrypt(ct))).code).toBe("unknown-kid");
    sender.removeKeys((k) => k === 9n);
    expect(sender.nextCounter(9n)).toBeUndefined();
  });

  it("validates its options", () => {
    expect(() => new SFrameContext(6 as 4)).toThrow(SFrameError);
    expect(() => new SFrameContext(4, { replayWindow: 100 })).toThrow(/power of two/);
    expect(() => new SFrameContext(4, { maxReceiveKeys: 0 })).toThrow(SFrameError);
  });
});

describe("nonce", () => {
  it("is the salt XOR the 64-bit CTR, on both sides of 2^32 and 2^53", () => {
    const salt = fromHex("0102030405060708090a0b0c");
    for (const ctr of [0n, 1n, 0xffff_ffffn, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 0x0123_4567_89ab_cdefn, MAX_UINT64]) {
      const expected = salt.slice();
      for (let i = 0; i < 8; i++) expected[11 - i]! ^= Number((ctr >> BigInt(8 * i)) & 0xffn);
      expect(toHex(sframeNonce(salt, ctr))).toBe(toHex(expected));
    }
  });
});

describe("replay protection", () => {
  it("rejects an in-window duplicate and accepts reordering inside the window", async () => {
    const { sender, receiver } = await pair(4, 9n, { replayWindow: 32 });
    const cts = [];
    for (let i = 0; i < 10; i++) cts.push(await sender.encrypt(9n, utf8(`frame ${i}`)));
    for (const i of [9, 3, 5, 0, 8, 1, 2, 4, 6, 7]) expect((await receiver.decrypt(cts[i]!)).ctr).toBe(BigInt(i));
    for (const i of [0, 5, 9]) expect((await rejection(SFrameError, receiver.decrypt(cts[i]!))).code).toBe("replay");
  });

  it("rejects a CTR older than the window even if never seen", async () => {
    const { sender, receiver } = await pair(4, 9n, { replayWindow: 32 });
    const cts = [];
    for (let i = 0; i < 41; i++) cts.push(await sender.encrypt(9n, utf8(`f${i}`)));
    for (let i = 0; i < 41; i++) if (i !== 3 && i !== 9) await receiver.decrypt(cts[i]!);
    expect((await rejection(SFrameError, receiver.decrypt(cts[3]!))).code).toBe("replay"); // 40 - 3 >= 32
    expect((await receiver.decrypt(cts[9]!)).ctr).toBe(9n); // 40 - 9 < 32
  });

  it("lets exactly one of two concurrent copies through", async () => {
    const { sender, receiver } = await pair();
    const ct = await sender.encrypt(9n, utf8("once"));
    const results = await Promise.allSettled([receiver.decrypt(ct), receiver.decrypt(ct), receiver.decrypt(ct)]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as SFrameError).code).toBe("replay");
  });

  it("windows are per KID", async () => {
    const sender = new SFrameContext(4);
    const receiver = new SFrameContext(4);
    for (const kid of [1n, 2n]) {
      await sender.addSendKey(kid, BASE);
      await receiver.addReceiveKey(kid, BASE);
    }
    await receiver.decrypt(await sender.encrypt(1n, utf8("a")));
    expect((await receiver.decrypt(await sender.encrypt(2n, utf8("b")))).ctr).toBe(0n);
  });

  it("ReplayWindow slides over a large jump and clears old slots", () => {
    const w = new ReplayWindow(32);
    expect(w.accept(5n)).toBe(true);
    expect(w.accept(5n)).toBe(false);
    expect(w.accept(1000n)).toBe(true);
    expect(w.check(969n)).toBe(true); // 1000 - 969 = 31 < 32, and its slot (shared with 5) was cleared
    expect(w.check(968n)).toBe(false);
    expect(w.accept(1001n)).toBe(true);
    expect(w.accept(969n)).toBe(false); // now 32 behind
    expect(w.accept(MAX_UINT64)).toBe(true);
    expect(w.accept(MAX_UINT64 - 31n)).toBe(true);
    expect(w.accept(MAX_UINT64 - 32n)).toBe(false);
  });
});

describe("resolved receive keys", () => {
  it("resolves on demand, caches only after authentication, and bounds the cache", async () => {
    const calls: bigint[] = [];
    const receiver = new SFrameContext(4, {
      maxReceiveKeys: 2,
      resolveReceiveKey: (kid) => {
        calls.push(kid);
        return kid < 100n ? base(Number(kid)) : undefined;
      },
    });
    const sender = new SFrameContext(4);
    for (const kid of [1n, 2n, 3n]) await sender.addSendKey(kid, base(Number(kid)));

    const forged = await sender.encrypt(1n, utf8("x"));
    forged[forged.length - 1]! ^= 1;
    expect((await rejection(SFrameError, receiver.decrypt(forged))).code).toBe("auth-failed");
    await receiver.decrypt(await sender.encrypt(1n, utf8("a")));
    await receiver.decrypt(await sender.encrypt(1n, utf8("b")));
    // forgery: resolved, not cached; first real frame: resolved and re-checked before caching; second: cache hit
    expect(calls).toEqual([1n, 1n, 1n]);

    await receiver.decrypt(await sender.encrypt(2n, utf8("c")));
    await receiver.decrypt(await sender.encrypt(1n, utf8("d"))); // 1 is now the most recent
    await receiver.decrypt(await sender.encrypt(3n, utf8("e"))); // evicts 2
    calls.length = 0;
    await receiver.decrypt(await sender.encrypt(1n, utf8("f")));
    expect(calls).toEqual([]);
    await receiver.decrypt(await sender.encrypt(2n, utf8("g")));
    expect(calls).toEqual([2n, 2n]);

    const stranger = new SFrameContext(4);
    await stranger.addSendKey(500n, BASE);
    expect((await rejection(SFrameError, receiver.decrypt(await stranger.encrypt(500n, utf8("?"))))).code).toBe("unknown-kid");
  });

  it("refuses a frame whose base key was replaced while it was being decrypted", async () => {
    let current = base(1);
    const receiver = new SFrameContext(4, { resolveReceiveKey: () => current });
    const sender = new SFrameContext(4);
    await sender.addSendKey(1n, base(1));
    const pending = receiver.decrypt(await sender.encrypt(1n, utf8("old epoch")));
    current = base(2);
    expect((await rejection(SFrameError, pending)).code).toBe("unknown-kid");
  });
});

describe("KeyCache", () => {
  it("evicts the least recently used entry", () => {
    const c = new KeyCache<string>(3);
    c.set(1n, "a");
    c.set(2n, "b");
    c.set(3n, "c");
    c.get(1n);
    c.set(4n, "d");
    expect(c.get(2n)).toBeUndefined();
    expect([c.get(1n), c.get(3n), c.get(4n)]).toEqual(["a", "c", "d"]);
    expect(c.size).toBe(3);
    c.deleteWhere((k) => k % 2n === 0n);
    expect(c.size).toBe(2);
  });
});
