/**
 * The frame-transform worker's frame path in Node (same code as in the browser worker, fed plain frame
 * objects): ordering with frames in flight, held frames released on key arrival, the time and count
 * bounds, expired epochs, replay, wrong keys, and never sending before an epoch is known.
 */
import { afterEach, describe, expect, it } from "vitest";
import { bytesEqual } from "../../keying/codec/bytes.js";
import { detectTransformApi, E2eeUnsupportedError, FrameCryptoController } from "../../client/worker/controller.js";
import { FrameCrypto } from "../../client/worker/frame-crypto.js";
import type { TransformableFrame } from "../../client/worker/frame-stream.js";
import type { FrameCryptoOptions, FromWorker, ParticipantStats, StreamRole } from "../../client/worker/protocol.js";

/** Deterministic filler bytes; the codec rules themselves are tested with real frames elsewhere. */
function bytes(length: number, seed: number): Uint8Array {
  return new Uint8Array(length).map((_, i) => (i * 131 + seed * 17 + 7) & 0xff);
}

/** VP8 frames by the P bit of the frame tag (0: key frame, 10-byte prefix; 1: delta, 3 bytes). */
function vp8Frame(length: number, seed: number, keyFrame: boolean): Uint8Array {
  const b = bytes(length, seed);
  b[0] = keyFrame ? b[0]! & 0xfe : b[0]! | 1;
  return b;
}

const vp8 = [2300, 390, 510, 540, 1076, 1049].map((n, i) => ({ mimeType: "video/VP8", bytes: vp8Frame(n, i, i === 0) }));
const fixtures = [
  ...vp8,
  ...[4306, 334, 848].map((n, i) => ({ mimeType: "video/VP9", bytes: bytes(n, 10 + i) })),
  ...[32, 34, 35, 160].map((n, i) => ({ mimeType: "audio/opus", bytes: bytes(n, 20 + i) })),
  { mimeType: "video/VP8", bytes: vp8Frame(50_000, 30, true) },
];

class Frame implements TransformableFrame {
  constructor(
    public data: ArrayBuffer,
    private readonly mimeType: string | undefined,
  ) {}
  getMetadata() {
    return this.mimeType === undefined ? {} : { mimeType: this.mimeType };
  }
}

/** `mimeType` null: a frame without one in its metadata. */
function frame(bytes: Uint8Array, mimeType: string | null = "video/VP8"): Frame {
  return new Frame(bytes.slice().buffer, mimeType ?? undefined);
}

function key(seed: number): Uint8Array {
  return new Uint8Array(16).map((_, i) => (seed * 31 + i) & 0xff);
}

const FAST: Partial<FrameCryptoOptions> = { statsIntervalMs: 60_000, errorIntervalMs: 0 };
const workers: FrameCrypto[] = [];

function worker(options: Partial<FrameCryptoOptions> = {}): { core: FrameCrypto; posted: FromWorker[] } {
  const posted: FromWorker[] = [];
  const core = new FrameCrypto((m) => posted.push(m), { ...FAST, ...options });
  workers.push(core);
  return { core, posted };
}

afterEach(() => {
  for (const w of workers.splice(0)) w.close();
});

let nextStreamId = 0;

/** A stream attached to a worker, fed frame by frame, collecting what comes out. */
function attach(core: FrameCrypto, role: StreamRole, participantId: string) {
  const input = new TransformStream<Frame, Frame>();
  const writer = input.writable.getWriter();
  const out: Frame[] = [];
  const streamId = nextStreamId++;
  const done = core.attach({ streamId, role, participantId }, input.readable, new WritableStream<Frame>({ write: (f) => void out.push(f) }));
  return {
    out,
    streamId,
    done,
    push: (f: Frame) => writer.write(f),
    end: async () => {
      await writer.close();
      await done;
    },
  };
}

async function until(probe: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function statsOf(core: FrameCrypto, participantId: string): ParticipantStats {
  return core.statsSnapshot().find((s) => s.participantId === participantId) ?? ({ dropped: {} } as ParticipantStats);
}

/** Encrypts `frames` as participant "alice" (leaf 0) in `epoch`; returns the protected frames in order. */
async function encrypted(frames: Frame[], epoch = 1n, baseKey = key(1)): Promise<Frame[]> {
  const { core } = worker();
  await core.setEpoch({ epoch, baseKey, myLeafIndex: 0 });
  const s = attach(core, "send", "alice");
  for (const f of frames) await s.push(f);
  await s.end();
  return s.out;
}

describe("frame-transform worker frame path", () => {
  it("round-trips frames of several codecs and sizes in order, with several in flight", async () => {
    const originals = [...fixtures, ...fixtures, ...fixtures];
    const protectedFrames = await encrypted(originals.map((f) => frame(f.bytes, f.mimeType)));
    expect(protectedFrames).toHaveLength(originals.length);
    expect(protectedFrames.some((f, i) => bytesEqual(new Uint8Array(f.data), originals[i]!.bytes))).toBe(false);

    const { core } = worker({ maxInFlight: 8 });
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    const r = attach(core, "receive", "alice");
    for (const f of protectedFrames) await r.push(f);
    await r.end();
    expect(r.out.map((f) => new Uint8Array(f.data))).toEqual(originals.map((f) => f.bytes));
    const s = statsOf(core, "alice");
    expect(s.decrypted).toBe(originals.length);
    expect(s.dropped).toEqual({});
    expect(s.epoch).toBe(1n);
  });

  it("holds frames of an epoch not yet known and releases them in order when its keys arrive", async () => {
    const originals = [...vp8, ...vp8];
    const protectedFrames = await encrypted(originals.map((f) => frame(f.bytes)), 2n, key(2));
    const { core } = worker({ holdMs: 60_000 });
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    const r = attach(core, "receive", "alice");
    for (const f of protectedFrames) await r.push(f);
    await until(() => statsOf(core, "alice").held === originals.length, "all frames held");
    expect(r.out).toHaveLength(0);

    await core.setEpoch({ epoch: 2n, baseKey: key(2), myLeafIndex: 1 });
    await until(() => r.out.length === originals.length, "held frames released");
    expect(r.out.map((f) => new Uint8Array(f.data))).toEqual(originals.map((f) => f.bytes));
    const s = statsOf(core, "alice");
    expect(s.released).toBe(originals.length);
    expect(s.dropped).toEqual({});
    await r.end();
  });

  it("keeps order across an epoch switch mid-stream when the receiver learns the epoch late", async () => {
    const sender = worker().core;
    await sender.setEpoch({ epoch: 5n, baseKey: key(5), myLeafIndex: 0 });
    const s = attach(sender, "send", "alice");
    for (const f of vp8) await s.push(frame(f.bytes));
    await until(() => s.out.length === vp8.length, "epoch 5 frames");
    await sender.setEpoch({ epoch: 6n, baseKey: key(6), myLeafIndex: 0 });
    for (const f of vp8) await s.push(frame(f.bytes));
    await s.end();

    const { core } = worker({ holdMs: 60_000 });
    await core.setEpoch({ epoch: 5n, baseKey: key(5), myLeafIndex: 1 });
    const r = attach(core, "receive", "alice");
    for (const f of s.out) await r.push(f);
    await until(() => statsOf(core, "alice").held === vp8.length && r.out.length === vp8.length, "epoch 5 out, epoch 6 held");
    await core.setEpoch({ epoch: 6n, baseKey: key(6), myLeafIndex: 1 });
    await r.end();
    expect(r.out.map((f) => new Uint8Array(f.data))).toEqual([...vp8, ...vp8].map((f) => f.bytes));
    expect(statsOf(core, "alice")).toMatchObject({ decrypted: 2 * vp8.length, released: vp8.length, dropped: {}, epoch: 6n });
  });

  it("drops held frames past the time bound and counts them", async () => {
    const protectedFrames = await encrypted(vp8.map((f) => frame(f.bytes)));
    const { core } = worker({ holdMs: 20 });
    const r = attach(core, "receive", "alice");
    for (const f of protectedFrames) await r.push(f);
    await until(() => statsOf(core, "alice").dropped["hold-timeout"] === vp8.length, "hold timeout");
    expect(r.out).toHaveLength(0);
    expect(statsOf(core, "alice").held).toBe(vp8.length);
    await r.end();
  });

  it("drops the oldest held frames past the count bound and releases the rest", async () => {
    const originals = [...vp8, ...vp8];
    const protectedFrames = await encrypted(originals.map((f) => frame(f.bytes)));
    const { core } = worker({ holdMs: 60_000, maxHeldFrames: 4 });
    const r = attach(core, "receive", "alice");
    for (const f of protectedFrames) await r.push(f);
    await until(() => statsOf(core, "alice").held === originals.length, "all frames held");
    expect(statsOf(core, "alice").dropped["hold-overflow"]).toBe(originals.length - 4);
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    await r.end();
    expect(r.out.map((f) => new Uint8Array(f.data))).toEqual(originals.slice(-4).map((f) => f.bytes));
  });

  it("drops frames of an epoch whose grace ended instead of holding them", async () => {
    const old = await encrypted(vp8.map((f) => frame(f.bytes)), 1n, key(1));
    const { core } = worker({ graceMs: 0, holdMs: 60_000 });
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    await core.setEpoch({ epoch: 2n, baseKey: key(2), myLeafIndex: 1 });
    await new Promise((r) => setTimeout(r, 20));
    const r = attach(core, "receive", "alice");
    for (const f of old) await r.push(f);
    await r.end();
    expect(r.out).toHaveLength(0);
    expect(statsOf(core, "alice")).toMatchObject({ held: 0, dropped: { "expired-epoch": vp8.length } });
  });

  it("still decrypts the previous epoch within its grace", async () => {
    const old = await encrypted(vp8.map((f) => frame(f.bytes)), 1n, key(1));
    const { core } = worker({ graceMs: 60_000 });
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    await core.setEpoch({ epoch: 2n, baseKey: key(2), myLeafIndex: 1 });
    const r = attach(core, "receive", "alice");
    for (const f of old) await r.push(f);
    await r.end();
    expect(r.out).toHaveLength(vp8.length);
  });

  it("counts a wrong key as auth failures and a replayed frame as a replay rejection", async () => {
    const protectedFrames = await encrypted(vp8.map((f) => frame(f.bytes)));
    const wrong = worker();
    await wrong.core.setEpoch({ epoch: 1n, baseKey: key(9), myLeafIndex: 1 });
    const w = attach(wrong.core, "receive", "alice");
    for (const f of protectedFrames) await w.push(frame(new Uint8Array(f.data)));
    await w.end();
    expect(w.out).toHaveLength(0);
    expect(statsOf(wrong.core, "alice").dropped).toEqual({ "auth-failed": vp8.length });
    const errors = wrong.posted.filter((m) => m.type === "error");
    expect(errors.length).toBeGreaterThan(0);
    for (const m of errors) expect(m.type === "error" && m.error.participantId).toBe("alice");

    const { core } = worker();
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    const r = attach(core, "receive", "alice");
    await r.push(frame(new Uint8Array(protectedFrames[0]!.data)));
    await r.push(frame(new Uint8Array(protectedFrames[0]!.data)));
    await r.end();
    expect(r.out).toHaveLength(1);
    expect(statsOf(core, "alice")).toMatchObject({ decrypted: 1, replayRejected: 1, dropped: {} });
  });

  it("never sends before an epoch is known, nor a payload it has no layout for", async () => {
    const { core } = worker();
    const s = attach(core, "send", "me");
    await s.push(frame(vp8[0]!.bytes));
    await s.push(frame(vp8[1]!.bytes, "video/red"));
    await s.push(frame(vp8[1]!.bytes, null));
    await s.push(frame(new Uint8Array(0)));
    await s.end();
    expect(s.out.map((f) => f.data.byteLength)).toEqual([0]);
    expect(statsOf(core, "me").dropped).toEqual({ "no-send-key": 1, "unsupported-codec": 2 });
  });

  it("throttles errors per participant and reason and never puts key bytes in them", async () => {
    const baseKey = key(7);
    const protectedFrames = await encrypted(vp8.map((f) => frame(f.bytes)), 1n, key(1));
    const { core, posted } = worker({ errorIntervalMs: 60_000 });
    await core.setEpoch({ epoch: 1n, baseKey, myLeafIndex: 1 });
    const r = attach(core, "receive", "bob");
    for (const f of protectedFrames) await r.push(f);
    await r.end();
    await core.setEpoch({ epoch: 1n, baseKey, myLeafIndex: 1 });
    await until(() => posted.filter((m) => m.type === "error").length === 2, "error posts");
    const errors = posted.flatMap((m) => (m.type === "error" ? [m.error] : []));
    expect(errors.map((e) => [e.participantId, e.reason])).toEqual([
      ["bob", "auth-failed"],
      ["self", "epoch-refused"],
    ]);
    expect(statsOf(core, "bob").dropped["auth-failed"]).toBe(vp8.length);
    const text = JSON.stringify(posted, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
    for (const k of [baseKey, key(1)]) expect(text).not.toContain(Buffer.from(k).toString("hex"));
  });

  it("continues a send context's CTR when its keyring is reused by the next sender", async () => {
    const { core } = worker();
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 0 });
    const first = attach(core, "send", "me");
    await first.push(frame(vp8[1]!.bytes));
    await first.end();
    const second = attach(core, "send", "me");
    await second.push(frame(vp8[1]!.bytes));
    await second.end();

    const rx = worker().core;
    await rx.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 1 });
    const r = attach(rx, "receive", "me");
    await r.push(first.out[0]!);
    await r.push(second.out[0]!);
    await r.end();
    // Same KID (context reused) and the second frame was accepted: its CTR moved on, no nonce reuse.
    expect(statsOf(rx, "me")).toMatchObject({ decrypted: 2, replayRejected: 0 });
  });

  it("stops reading a released stream, so nothing passes through it afterwards", async () => {
    const { core } = worker();
    await core.setEpoch({ epoch: 1n, baseKey: key(1), myLeafIndex: 0 });
    const s = attach(core, "send", "me");
    await s.push(frame(vp8[1]!.bytes));
    await until(() => s.out.length === 1, "first frame");
    core.release(s.streamId);
    await s.done;
    await expect(s.push(frame(vp8[1]!.bytes))).rejects.toThrow();
    expect(s.out).toHaveLength(1);
    expect(core.statsSnapshot().flatMap((x) => Object.keys(x.dropped))).toEqual([]);
  });

  it("page controller refuses to start where neither transform API exists (Node has none)", () => {
    expect(detectTransformApi()).toBeUndefined();
    expect(() => new FrameCryptoController({ workerUrl: "/frame-transform.js" })).toThrow(E2eeUnsupportedError);
    expect(() => new FrameCryptoController({ workerUrl: "/frame-transform.js", api: "encoded-streams" })).toThrow(E2eeUnsupportedError);
  });
});
