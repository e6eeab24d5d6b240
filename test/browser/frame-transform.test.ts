/**
 * The frame-transform worker in Debian's Chromium, through both transform APIs: alice's fake camera and
 * microphone go over loopback RTCPeerConnection pairs, encrypted by her worker and decrypted by each
 * receiver's. Waits are generous polls (the machine may be loaded); nothing asserts a timing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { pollUntil, startBrowserSession, type BrowserSession } from "./harness.js";
import type { LoopbackApi, LoopbackSetup, LoopbackSnapshot, ReceiverSnapshot } from "./pages/loopback.js";

const TEST_TIMEOUT = 300_000;
const POLL = { timeoutMs: 120_000, intervalMs: 300 };
/** Decoded frames that show a stream is flowing (about one second of the fake camera). */
const FLOWING = 30;

let session: BrowserSession;

beforeAll(async () => {
  session = await startBrowserSession(["frame-transform", "loopback-page"]);
}, TEST_TIMEOUT);

afterAll(async () => {
  await session?.close();
});

type Loopback = { [K in keyof LoopbackApi]: (...args: Parameters<LoopbackApi[K]>) => Promise<Awaited<ReturnType<LoopbackApi[K]>>> };

/** Calls into the page's `globalThis.loopback`. */
function driver(page: Page): Loopback {
  const call =
    (name: keyof LoopbackApi) =>
    (...args: unknown[]) =>
      page.evaluate(([n, a]) => (globalThis as unknown as { loopback: Record<string, (...x: unknown[]) => unknown> }).loopback[n]!(...a), [name, args] as const);
  return new Proxy({} as Loopback, { get: (_, name) => call(name as keyof LoopbackApi) });
}

async function withLoopback(setup: LoopbackSetup, body: (lb: Loopback) => Promise<void>): Promise<void> {
  const page = await session.open("loopback-page");
  const lb = driver(page);
  try {
    await lb.start(setup);
    await body(lb);
  } catch (e) {
    const snapshot = await lb.snapshot().catch(() => undefined);
    const detail = JSON.stringify(snapshot, (_, v: unknown) => (typeof v === "bigint" ? `${v}n` : v), 1);
    throw new Error(`${e instanceof Error ? e.message : String(e)}\nlast snapshot: ${detail}\npage log:\n${session.log.slice(-40).join("\n")}`, { cause: e });
  } finally {
    await lb.stop().catch(() => undefined);
    await page.close();
  }
}

function receiver(s: LoopbackSnapshot, name: string): ReceiverSnapshot {
  const r = s.receivers[name];
  if (!r) throw new Error(`no receiver ${name} in snapshot`);
  return r;
}

const failures = (r: ReceiverSnapshot) => Object.values(r.stats?.dropped ?? {}).reduce((a, b) => a + (b ?? 0), 0) + (r.stats?.replayRejected ?? 0);

describe.each(["script-transform", "encoded-streams"] as const)("frame-transform worker via %s", (api) => {
  it(
    "decrypts for keyed receivers, not for others, and switches epoch mid-stream without losing a frame",
    async () => {
      await withLoopback(
        {
          api,
          videoCodec: "video/VP8",
          audio: true,
          initialEpoch: 1n,
          receivers: [
            // Keys for the switch are withheld on purpose: hold long and deep enough for a loaded machine.
            { name: "bob", keys: "shared", options: { holdMs: 60_000, maxHeldFrames: 4096 } },
            { name: "carol", keys: "none", options: { holdMs: 200 } },
            { name: "dave", keys: "wrong" },
          ],
        },
        async (lb) => {
          const flowing = await pollUntil(
            () => lb.snapshot(),
            (s) => {
              const b = receiver(s, "bob");
              const daveFailed = receiver(s, "dave").stats?.dropped["auth-failed"] ?? 0;
              return b.framesDecoded >= FLOWING && b.audioPackets > 0 && (b.stats?.decrypted ?? 0) > b.framesDecoded && daveFailed > 0;
            },
            POLL,
          );
          const bob = receiver(flowing, "bob");
          expect(bob.framesDecoded).toBeGreaterThanOrEqual(FLOWING);
          expect(bob.audioPackets).toBeGreaterThan(0);
          // Audio frames go through the worker too: more frames decrypted than video frames decoded.
          expect(bob.stats?.decrypted).toBeGreaterThan(bob.framesDecoded);
          expect(failures(bob)).toBe(0);
          expect(flowing.alice?.encrypted).toBeGreaterThan(0);
          expect(flowing.alice?.dropped).toEqual({});

          // carol has no keys: her worker holds, then drops, and her decoder never gets a frame.
          const noKeys = await pollUntil(
            () => lb.snapshot(),
            (s) => (receiver(s, "carol").stats?.dropped["hold-timeout"] ?? 0) > 0,
            POLL,
          );
          const carol = receiver(noKeys, "carol");
          expect(carol.stats?.dropped["hold-timeout"]).toBeGreaterThan(0);
          expect(carol.stats?.decrypted).toBe(0);
          expect(carol.framesDecoded).toBe(0);
          // dave has the wrong keys: every frame fails authentication, nothing is decoded.
          const dave = receiver(noKeys, "dave");
          expect(dave.stats?.dropped["auth-failed"]).toBeGreaterThan(0);
          expect(dave.stats?.decrypted).toBe(0);
          expect(dave.framesDecoded).toBe(0);

          // Epoch switch: alice sends under epoch 2 at once; bob learns it only after holding frames for it.
          await lb.setEpoch("alice", 2n);
          const held = await pollUntil(
            () => lb.snapshot(),
            // Audio (50/s) and video (30/s) both held for about a second.
            (s) => (receiver(s, "bob").stats?.held ?? 0) >= 60,
            POLL,
          );
          expect(receiver(held, "bob").stats?.held).toBeGreaterThanOrEqual(60);
          const decodedAtSwitch = receiver(held, "bob").framesDecoded;
          await lb.setEpoch("bob", 2n);
          const after = await pollUntil(
            () => lb.snapshot(),
            (s) => {
              const b = receiver(s, "bob");
              return b.stats?.epoch === 2n && b.stats.released === b.stats.held && b.framesDecoded >= decodedAtSwitch + FLOWING;
            },
            POLL,
          );
          const b = receiver(after, "bob");
          expect(b.stats?.epoch).toBe(2n);
          expect(b.stats?.released).toBe(b.stats?.held);
          expect(b.framesDecoded).toBeGreaterThanOrEqual(decodedAtSwitch + FLOWING);
          expect(failures(b)).toBe(0);
          expect(after.alice?.epoch).toBe(2n);
          expect(after.errors.filter((e) => e.startsWith("bob:") || e.startsWith("alice:"))).toEqual([]);
        },
      );
    },
    TEST_TIMEOUT,
  );
});

describe("frame-transform worker codec layouts", () => {
  for (const codec of ["video/VP9", "video/H264", "video/AV1"]) {
    it(
      `${codec} frames decrypt and decode`,
      async () => {
        const page = await session.open("loopback-page");
        const supported = await driver(page).videoCodecs();
        await page.close();
        if (!supported.includes(codec)) {
          console.warn(`${codec}: not offered by this Chromium, skipped`);
          return;
        }
        await withLoopback(
          { api: "script-transform", videoCodec: codec, audio: false, initialEpoch: 1n, receivers: [{ name: "bob", keys: "shared" }] },
          async (lb) => {
            const s = await pollUntil(() => lb.snapshot(), (x) => receiver(x, "bob").framesDecoded >= FLOWING, POLL);
            expect(receiver(s, "bob").framesDecoded).toBeGreaterThanOrEqual(FLOWING);
            expect(failures(receiver(s, "bob"))).toBe(0);
            expect(s.alice?.dropped).toEqual({});
          },
        );
      },
      TEST_TIMEOUT,
    );
  }
});
