/**
 * The werift SFU with real Chromium peers (fake camera and microphone): three pages publish through one SFU and
 * decode each other, a late joiner gets a keyframe, and a removed participant stops receiving. The Socket.IO
 * server here is the test's own, with the handshake's { participantId, room } as its only "auth".
 */
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { build } from "esbuild";
import type { Page } from "playwright-core";
import { Server } from "socket.io";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeHeader, EpochKeyring, nodeCryptoAead, parseMlsKid, unprotectFrame } from "../../keying/sframe/index.js";
import { createSfu, type ForwardedRtp, type Sfu } from "../../sfu-signaling/sfu/index.js";
import { vp8Frames, vp8Prefix } from "./sfu-forwarded.js";
import { launchChromium, pollUntil, serveStatic, type Browser, type StaticServer } from "./harness.js";
import type { JoinOptions, PeerStats, SfuPeerApi, TestSFrameKeying } from "./pages/sfu-peer.js";

const ROOM = "sfu-browser";
const PAGE = "sfu-peer";

/** Frames that must be decoded to call a stream flowing: a few seconds at 15 fps. */
const FLOWING = 30;

describe("werift SFU with Chromium", () => {
  let sfu: Sfu;
  let ioServer: Server;
  let signalingUrl: string;
  let bundleDir: string;
  let pages: StaticServer;
  let browser: Browser;
  const log: string[] = [];

  beforeAll(async () => {
    bundleDir = await mkdtemp(join(tmpdir(), "conclave-sfu-page-"));
    await build({
      entryPoints: { [PAGE]: "test/browser/pages/sfu-peer.ts" },
      outdir: bundleDir,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "chrome120",
      // keying/ reaches node:crypto only behind a runtime guard; the page takes the WebCrypto path.
      external: ["node:*"],
      logLevel: "warning",
    });
    pages = await serveStatic(bundleDir);
    sfu = createSfu({ log: (event, detail) => log.push(`sfu ${event} ${JSON.stringify(detail)}`) });
    const http = createServer();
    ioServer = new Server(http, { cors: { origin: pages.origin } });
    ioServer.on("connection", (socket) => {
      const { participantId, room } = socket.handshake.auth as { participantId: string; room: string };
      sfu.attach(socket, { participantId, room });
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    signalingUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    sfu?.close();
    await ioServer?.close();
    await pages?.close();
    if (bundleDir) await rm(bundleDir, { recursive: true, force: true });
  });

  async function openPeer(participantId: string, room = ROOM, options: JoinOptions = {}): Promise<Page> {
    const page = await browser.context.newPage();
    page.on("console", (m) => log.push(`[${participantId}] ${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => log.push(`[${participantId}] pageerror: ${e.message}`));
    await page.goto(`${pages.origin}/page/${PAGE}`);
    await page.waitForFunction(() => (globalThis as { conclaveReady?: boolean }).conclaveReady === true);
    const joined = await page.evaluate(
      ([url, id, inRoom, joinOptions]) => (globalThis as unknown as { sfuPeer: SfuPeerApi }).sfuPeer.join(url, id, inRoom, joinOptions),
      [signalingUrl, participantId, room, options] as const,
    );
    expect(joined).toEqual({ ok: true });
    return page;
  }

  const stats = (page: Page): Promise<PeerStats> =>
    page.evaluate(() => (globalThis as unknown as { sfuPeer: SfuPeerApi }).sfuPeer.stats());

  const decoded = (s: PeerStats, from: string): number => s.video[from]?.framesDecoded ?? 0;

  /** Polls until `page` has decoded `frames` more frames from each of `from` than it had at the start. */
  async function expectDecoding(page: Page, from: string[], frames = FLOWING): Promise<PeerStats> {
    const start = await stats(page);
    const last = await pollUntil(
      () => stats(page),
      (s) => from.every((id) => decoded(s, id) >= decoded(start, id) + frames),
      { timeoutMs: 90_000 },
    );
    for (const id of from) {
      expect(decoded(last, id), `frames from ${id}\n${log.slice(-40).join("\n")}`).toBeGreaterThanOrEqual(decoded(start, id) + frames);
    }
    return last;
  }

  it(
    "forwards three participants' video to each other, keys a late joiner and cuts off a removed one",
    { timeout: 400_000 },
    async () => {
      const alice = await openPeer("alice");
      const bob = await openPeer("bob");
      await expectDecoding(alice, ["bob"]);
      await expectDecoding(bob, ["alice"]);

      // Late joiner: the SFU asks both publishers for a keyframe when carol's subscriptions start.
      const requestsBefore = { alice: sfu.keyframeRequests(ROOM, "alice"), bob: sfu.keyframeRequests(ROOM, "bob") };
      const plisBefore = (await stats(alice)).outbound.pliCount;
      const carol = await openPeer("carol", ROOM, { keyframeProbe: true });
      const atCarol = await expectDecoding(carol, ["alice", "bob"]);
      expect(atCarol.video.alice!.keyFramesDecoded).toBeGreaterThanOrEqual(1);
      expect(sfu.keyframeRequests(ROOM, "alice")).toBeGreaterThan(requestsBefore.alice);
      expect(sfu.keyframeRequests(ROOM, "bob")).toBeGreaterThan(requestsBefore.bob);
      expect((await stats(alice)).outbound.pliCount).toBeGreaterThan(plisBefore);
      await expectDecoding(alice, ["bob", "carol"]);
      await expectDecoding(bob, ["alice", "carol"]);

      // A subscriber's own keyframe request (Chromium sends a PLI) reaches the publisher through the SFU.
      const requestsLogged = log.filter((line) => line.includes("keyframe-request")).length;
      const plisAtAlice = (await stats(alice)).outbound.pliCount;
      await carol.evaluate(() => (globalThis as unknown as { sfuPeer: SfuPeerApi }).sfuPeer.requestKeyframe("alice"));
      const aliceAsked = await pollUntil(() => stats(alice), (s) => s.outbound.pliCount > plisAtAlice);
      expect(aliceAsked.outbound.pliCount).toBeGreaterThan(plisAtAlice);
      expect(log.slice(requestsLogged).filter((line) => line.includes("keyframe-request"))).toContainEqual(
        expect.stringContaining('"participantId":"carol","publisherId":"alice"'),
      );

      // Removal: from the moment removeParticipant returns, no packet goes to or comes from bob.
      const afterRemoval: ForwardedRtp[] = [];
      let removed = false;
      const stopTap = sfu.tapForwarded((p) => {
        if (removed) afterRemoval.push(p);
      });
      expect(sfu.removeParticipant(ROOM, "bob")).toBe(true);
      removed = true;
      const bobAtRemoval = await pollUntil(() => stats(bob), (s) => s.removed !== null);
      expect(bobAtRemoval.removed).toBe("removed");
      // The others keep decoding each other, and are renegotiated down to one remote participant, while bob's
      // connection (left open by his page) receives nothing more: packets in flight at the removal have landed
      // by the time the others decoded a few seconds more, so his count is taken then and must not move.
      await expectDecoding(alice, ["carol"]);
      const bobSettled = await stats(bob);
      await expectDecoding(carol, ["alice"]);
      const aliceAfter = await pollUntil(() => stats(alice), (s) => Object.keys(s.video).length === 1);
      expect(Object.keys(aliceAfter.video)).toEqual(["carol"]);
      stopTap();
      expect((await stats(bob)).packetsReceivedTotal).toBe(bobSettled.packetsReceivedTotal);
      expect(afterRemoval.filter((p) => p.to === "bob" || p.from === "bob")).toEqual([]);
      expect(afterRemoval.some((p) => p.kind === "video" && p.from === "alice" && p.to === "carol")).toBe(true);
      expect(sfu.participants(ROOM).sort()).toEqual(["alice", "carol"]);

      // A newcomer takes over the m-lines bob's tracks left in the others' connections.
      const dave = await openPeer("dave");
      await expectDecoding(dave, ["alice", "carol"]);
      await expectDecoding(alice, ["carol", "dave"]);
      await expectDecoding(carol, ["alice", "dave"]);
    },
  );

  it("forwards SFrame-protected media untouched: every forwarded frame is ciphertext under its sender's KID", { timeout: 400_000 }, async () => {
    const room = "sfu-sframe";
    const keying = (leafIndex: number): TestSFrameKeying => ({ epoch: 1, leafIndex, baseKey: [...baseKey] });
    const baseKey = randomBytes(16);
    const tapped: ForwardedRtp[] = [];
    const stopTap = sfu.tapForwarded((p) => {
      if (p.room === room && p.from === "erin" && tapped.length < 5000) tapped.push(p);
    });
    const erin = await openPeer("erin", room, { sframe: keying(0) });
    const frank = await openPeer("frank", room, { sframe: keying(1) });
    await expectDecoding(frank, ["erin"]);
    await expectDecoding(erin, ["frank"]);
    stopTap();
    const atFrank = await stats(frank);
    expect(atFrank.sframe.unprotected).toBeGreaterThan(FLOWING);
    expect(atFrank.sframe.failed).toBe(0);
    expect((await stats(erin)).sframe.failed).toBe(0);

    // Opus has no clear prefix: every audio payload is an SFrame ciphertext from its first byte.
    const audio = tapped.filter((p) => p.kind === "audio");
    expect(audio.length).toBeGreaterThan(FLOWING);
    for (const p of audio) expect(parseMlsKid(decodeHeader(p.payload).kid)).toEqual({ context: 0n, leafIndex: 0, epochBits: 1 });

    // Video frames reassembled from what the SFU sent: clear prefix || SFrame ciphertext that authenticates
    // under erin's key (so not a byte was changed) and does not contain the plaintext.
    const frames = vp8Frames(tapped.filter((p) => p.kind === "video"));
    expect(frames.length).toBeGreaterThan(FLOWING);
    const observer = new EpochKeyring({ aead: await nodeCryptoAead() });
    await observer.addEpoch(1n, 7, Uint8Array.from(baseKey));
    for (const frame of frames) {
      const prefix = vp8Prefix(frame);
      const header = decodeHeader(frame.subarray(prefix));
      expect(parseMlsKid(header.kid)).toEqual({ context: 1n, leafIndex: 0, epochBits: 1 });
      const { frame: plain } = await unprotectFrame(observer.context, "vp8", frame);
      expect(Buffer.from(plain.subarray(0, prefix))).toEqual(Buffer.from(frame.subarray(0, prefix)));
      const body = Buffer.from(plain.subarray(prefix, prefix + 16));
      if (body.length === 16) expect(Buffer.from(frame).indexOf(body)).toBe(-1);
    }
  });
});
