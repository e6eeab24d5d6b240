/**
 * The whole call in Debian's Chromium: the real DS with the werift SFU mounted on its connections and the
 * built demo served from it (as `npm start` wires them), and pages that join through the demo's form with
 * fake cameras and microphones. Checks what a participant sees (remote video decoding, E2EE badges, equal
 * safety codes, chat, rekeys on leave and join) and what the SFU forwards (SFrame ciphertext under the
 * sender's KID). Every wait is a generous poll: the machine may be a loaded 2-core box.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeHeader, parseMlsKid, type SFrameHeader } from "../../keying/sframe/index.js";
import type { RunningDs } from "../../sfu-signaling/server.js";
import type { ForwardedRtp, Sfu } from "../../sfu-signaling/sfu/index.js";
import { startCallServer, type CallServer } from "./call-server.js";
import { launchChromium, pollUntil, type Browser } from "./harness.js";
import { vp8Frames, vp8Prefix } from "./sfu-forwarded.js";

const ROOM = "e2e-call";
/** Decoded frames that show a stream is flowing (a few seconds of the fake camera). */
const FLOWING = 30;
const POLL = { timeoutMs: 180_000, intervalMs: 500 };
const MAX_TAPPED = 20_000;

/** What a page shows and counts, read through the demo's DOM and `window.conclave.call`. */
interface PageState {
  joined: boolean;
  selfId: string;
  leaf: number | null;
  epoch: string;
  safetyCode: string;
  media: string;
  /** framesDecoded by remote participant id. */
  decoded: Record<string, number>;
  e2ee: Record<string, { state: string; frames: number; failures: number; held: number; released: number }>;
  /** data-e2ee of each tile, by participant id. */
  tiles: Record<string, string>;
  chat: string[];
  timeline: string[];
}

function readState(page: Page): Promise<PageState> {
  return page.evaluate(async () => {
    const call = window.conclave.call;
    const text = (id: string) => document.getElementById(id)?.textContent ?? "";
    const tiles: Record<string, string> = {};
    document.querySelectorAll<HTMLElement>("#grid .tile").forEach((t) => (tiles[t.dataset.participant ?? "?"] = t.dataset.e2ee ?? ""));
    const chat = [...document.querySelectorAll("#chat-log li")].map((li) => li.textContent ?? "");
    const timeline = [...document.querySelectorAll("#timeline li")].map((li) => li.textContent ?? "");
    if (!call) return { joined: false, selfId: "", leaf: null, epoch: "", safetyCode: "", media: "", decoded: {}, e2ee: {}, tiles, chat, timeline };
    const stats = await call.mediaStats();
    const decoded: Record<string, number> = {};
    for (const [id, s] of Object.entries(stats.inbound)) decoded[id] = s.framesDecoded;
    const e2ee: PageState["e2ee"] = {};
    for (const s of call.e2ee.statuses()) e2ee[s.participantId] = { state: s.state, frames: s.frames, failures: s.failures, held: s.held, released: s.released };
    return {
      joined: true,
      selfId: call.selfId,
      leaf: call.leafIndex ?? null,
      epoch: text("epoch"),
      safetyCode: text("safety-code"),
      media: call.media.state,
      decoded,
      e2ee,
      tiles,
      chat,
      timeline,
    };
  });
}

describe("an end-to-end-encrypted call through the demo, the DS and the SFU", () => {
  let server: CallServer;
  let sfu: Sfu;
  let ds: RunningDs;
  let browser: Browser;
  const log: string[] = [];
  const tapped: ForwardedRtp[] = [];
  let tapping = false;
  const pages = new Map<string, Page>();
  const ids = new Map<string, string>();

  beforeAll(async () => {
    server = await startCallServer(log);
    ({ sfu, ds } = server);
    sfu.tapForwarded((p) => {
      if (tapping && p.room === ROOM && tapped.length < MAX_TAPPED) tapped.push(p);
    });
    browser = await launchChromium();
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const diagnostics = () => `\n--- last log lines ---\n${log.slice(-60).join("\n")}`;

  async function joinThroughDemo(name: string): Promise<Page> {
    const page = await browser.context.newPage();
    page.on("console", (m) => log.push(`[${name}] ${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => log.push(`[${name}] pageerror: ${e.message}`));
    await page.goto(`${ds.url}/`);
    await page.fill("#name", name);
    await page.fill("#room", ROOM);
    await page.click("#join");
    const state = await pollUntil(() => readState(page), (s) => s.joined && s.media === "connected", POLL);
    expect(state.joined, `${name} joined${diagnostics()}`).toBe(true);
    expect(state.media, `${name}'s media${diagnostics()}`).toBe("connected");
    pages.set(name, page);
    ids.set(name, state.selfId);
    return page;
  }

  const idOf = (name: string) => ids.get(name)!;
  const decodedFrom = (s: PageState, name: string) => s.decoded[idOf(name)] ?? 0;

  /** Every page in `names` is in the same epoch with the same safety code; returns their states. */
  async function expectAgreement(names: string[], minEpoch: number): Promise<Map<string, PageState>> {
    const states = new Map<string, PageState>();
    const agreed = async () => {
      for (const n of names) states.set(n, await readState(pages.get(n)!));
      const all = [...states.values()];
      return all.every((s) => Number(s.epoch) >= minEpoch && s.epoch === all[0]!.epoch && s.safetyCode === all[0]!.safetyCode);
    };
    await pollUntil(agreed, (ok) => ok, POLL);
    const all = [...states.values()];
    for (const s of all) {
      expect(Number(s.epoch), `epochs ${all.map((x) => x.epoch)}${diagnostics()}`).toBeGreaterThanOrEqual(minEpoch);
      expect(s.epoch).toBe(all[0]!.epoch);
      expect(s.safetyCode).toMatch(/^\d{5}( \d{5}){5}$/);
      expect(s.safetyCode).toBe(all[0]!.safetyCode);
    }
    return states;
  }

  /** Each page decodes FLOWING more video frames from every other page, with no E2EE failure and every held frame released. */
  async function expectDecodingEachOther(names: string[]): Promise<void> {
    for (const viewer of names) {
      const page = pages.get(viewer)!;
      const others = names.filter((n) => n !== viewer);
      const start = await readState(page);
      const last = await pollUntil(
        () => readState(page),
        (s) => others.every((o) => decodedFrom(s, o) >= decodedFrom(start, o) + FLOWING && s.e2ee[idOf(o)]?.state === "decrypting" && s.tiles[idOf(o)] === "decrypting"),
        POLL,
      );
      for (const o of others) {
        const what = `${viewer} receiving ${o}: ${JSON.stringify(last.e2ee[idOf(o)])}${diagnostics()}`;
        expect(decodedFrom(last, o), what).toBeGreaterThanOrEqual(decodedFrom(start, o) + FLOWING);
        expect(last.e2ee[idOf(o)]?.state, what).toBe("decrypting");
        expect(last.tiles[idOf(o)], what).toBe("decrypting");
        expect(last.e2ee[idOf(o)]?.failures, what).toBe(0);
      }
    }
    // Held frames (a sender switched epochs before this receiver had the commit) are all released, none dropped.
    for (const viewer of names) {
      const settled = await pollUntil(
        () => readState(pages.get(viewer)!),
        (s) => names.every((o) => o === viewer || s.e2ee[idOf(o)]?.held === s.e2ee[idOf(o)]?.released),
        POLL,
      );
      for (const o of names.filter((n) => n !== viewer)) {
        const e = settled.e2ee[idOf(o)]!;
        expect(e.released, `${viewer} receiving ${o}: ${JSON.stringify(e)}`).toBe(e.held);
        expect(e.failures).toBe(0);
      }
    }
  }

  /**
   * Every video frame the SFU forwarded from `from` is clear prefix || SFrame ciphertext: the header parses, its
   * KID names the sender's leaf and an epoch's low bits, and no (KID, CTR) repeats within a forwarded stream.
   */
  function expectCiphertext(packets: ForwardedRtp[], from: string, leaf: number, epoch: number): number {
    let frames = 0;
    const byStream = new Map<string, ForwardedRtp[]>();
    for (const p of packets) {
      if (p.from !== from) continue;
      const key = `${p.to}\u0000${p.kind}`;
      byStream.set(key, [...(byStream.get(key) ?? []), p]);
    }
    for (const [key, stream] of byStream) {
      const seen = new Set<string>();
      const check = (header: SFrameHeader) => {
        const kid = parseMlsKid(header.kid);
        expect(kid.leafIndex, `KID leaf of ${from}`).toBe(leaf);
        expect(kid.epochBits, `KID epoch of ${from}`).toBe(epoch % 16);
        const nonce = `${header.kid}:${header.ctr}`;
        expect(seen.has(nonce), `(KID, CTR) reused in ${key}`).toBe(false);
        seen.add(nonce);
      };
      if (key.endsWith("audio")) {
        // Opus has no clear prefix: an SFrame header from the first byte.
        for (const p of stream) check(decodeHeader(p.payload));
        continue;
      }
      for (const frame of vp8Frames(stream)) {
        const prefix = vp8Prefix(frame);
        const header = decodeHeader(frame.subarray(prefix));
        check(header);
        // A 16-byte tag follows the sender's bytes: at least header + tag beyond the prefix.
        expect(frame.length).toBeGreaterThanOrEqual(prefix + header.length + 16);
        frames++;
      }
    }
    return frames;
  }

  it(
    "three pages join through the demo, decode each other with no decrypt failure, show one safety code and chat",
    { timeout: 900_000 },
    async () => {
      for (const name of ["Alice", "Bob", "Carol"]) await joinThroughDemo(name);
      const states = await expectAgreement(["Alice", "Bob", "Carol"], 2);
      expect(new Set([...states.values()].map((s) => s.leaf)).size).toBe(3);
      await expectDecodingEachOther(["Alice", "Bob", "Carol"]);

      const alice = pages.get("Alice")!;
      await alice.fill("#chat-input", "hello from Alice, end to end");
      await alice.press("#chat-input", "Enter");
      for (const name of ["Bob", "Carol"]) {
        const s = await pollUntil(() => readState(pages.get(name)!), (x) => x.chat.some((line) => line.includes("hello from Alice, end to end")), POLL);
        expect(s.chat.join("\n"), `${name}'s chat`).toMatch(/Alice hello from Alice, end to end/);
      }
      const timeline = (await readState(alice)).timeline.join("\n");
      expect(timeline).toMatch(/epoch 2 Carol joined/);
      expect(timeline).toMatch(/epoch 1 Bob joined/);
    },
  );

  it("the SFU forwards only SFrame ciphertext under each sender's leaf and the current epoch", { timeout: 600_000 }, async () => {
    const states = await expectAgreement(["Alice", "Bob", "Carol"], 2);
    const epoch = Number(states.get("Alice")!.epoch);
    tapped.length = 0;
    tapping = true;
    await expectDecodingEachOther(["Alice", "Bob", "Carol"]);
    tapping = false;
    // The epoch did not move while tapping, so every frame is under it.
    expect((await expectAgreement(["Alice", "Bob", "Carol"], epoch)).get("Alice")!.epoch).toBe(String(epoch));
    for (const name of ["Alice", "Bob", "Carol"]) {
      const frames = expectCiphertext(tapped, idOf(name), states.get(name)!.leaf!, epoch);
      expect(frames, `video frames from ${name}`).toBeGreaterThan(FLOWING);
    }
  });

  it("one leaves: the others rekey and keep decoding, and the SFU sends the leaver nothing more", { timeout: 600_000 }, async () => {
    const before = Number((await expectAgreement(["Alice", "Bob", "Carol"], 2)).get("Alice")!.epoch);
    const carol = idOf("Carol");
    const afterLeave: ForwardedRtp[] = [];
    const stopTap = sfu.tapForwarded((p) => {
      if (p.room === ROOM && !sfu.participants(ROOM).includes(carol)) afterLeave.push(p);
    });
    await pages.get("Carol")!.click("#leave");
    const left = await pollUntil(() => readState(pages.get("Carol")!), (s) => !s.joined, POLL);
    expect(left.joined).toBe(false);
    expect(await pages.get("Carol")!.textContent("#join-status")).toMatch(/left the call/);
    expect(sfu.participants(ROOM)).not.toContain(carol);

    const states = await expectAgreement(["Alice", "Bob"], before + 1);
    expect(states.get("Alice")!.timeline.join("\n")).toMatch(new RegExp(`epoch ${before + 1} Carol left`));
    await expectDecodingEachOther(["Alice", "Bob"]);
    stopTap();
    expect(afterLeave.filter((p) => p.to === carol || p.from === carol)).toEqual([]);
    expect(afterLeave.some((p) => p.kind === "video" && p.from === idOf("Alice") && p.to === idOf("Bob"))).toBe(true);
    for (const name of ["Alice", "Bob"]) expect(Object.keys(states.get(name)!.decoded)).not.toContain(carol);
  });

  it("a fourth page joins: everyone rekeys and decodes the newcomer", { timeout: 600_000 }, async () => {
    const before = Number((await expectAgreement(["Alice", "Bob"], 3)).get("Alice")!.epoch);
    await joinThroughDemo("Dave");
    await expectAgreement(["Alice", "Bob", "Dave"], before + 1);
    await expectDecodingEachOther(["Alice", "Bob", "Dave"]);
  });

  it("a client that subscribes through the SFU without being in the MLS group decodes nothing", { timeout: 600_000 }, async () => {
    const page = await browser.context.newPage();
    page.on("console", (m) => log.push(`[outsider] ${m.type()}: ${m.text()}`));
    await page.goto(`${ds.url}/`);
    // Subscribing to the group's log is allowed before membership, and it grants the room's media.
    await page.evaluate(async (room) => {
      const { DsConnection, SfuClient, CallE2ee, fetchDevToken } = window.conclave.sdk;
      const connection = await DsConnection.connect({ url: location.origin, token: (await fetchDevToken(location.origin, { name: "Mallory", rooms: [room] })).token });
      const { group } = (await connection.request("room:join", { room })) as { group: { groupId: string; seq: number } };
      await connection.subscribe(group.groupId, group.seq, { entry: () => undefined, closed: () => undefined });
      const e2ee = new CallE2ee({ workerUrl: window.conclave.workerUrl, selfId: "Mallory" });
      const sfu = new SfuClient({ socket: connection.socket, protection: e2ee });
      await sfu.start({});
      Object.assign(window, { outsider: { sfu, e2ee } });
    }, ROOM);
    const outsiderStats = () =>
      page.evaluate(async () => {
        const { sfu, e2ee } = (window as unknown as { outsider: { sfu: { peerConnection?: RTCPeerConnection }; e2ee: { stats: readonly { decrypted: number }[] } } }).outsider;
        let packets = 0;
        let decoded = 0;
        (await sfu.peerConnection!.getStats()).forEach((s: Record<string, unknown>) => {
          if (s.type !== "inbound-rtp" || s.kind !== "video") return;
          packets += Number(s.packetsReceived ?? 0);
          decoded += Number(s.framesDecoded ?? 0);
        });
        return { packets, decoded, decrypted: e2ee.stats.reduce((n, s) => n + s.decrypted, 0) };
      });
    // Video reaches it (the SFU forwards to anyone the token admits), so the lack of frames is the encryption's doing.
    const last = await pollUntil(outsiderStats, (s) => s.packets > 300, POLL);
    expect(last.packets, diagnostics()).toBeGreaterThan(300);
    expect(last.decrypted).toBe(0);
    expect(last.decoded).toBe(0);
    // The members see someone outside the group in the SFU and keep decoding each other.
    const alice = await pollUntil(() => readState(pages.get("Alice")!), (s) => Object.keys(s.tiles).some((id) => id.startsWith("Mallory/")), POLL);
    expect(Object.keys(alice.tiles).some((id) => id.startsWith("Mallory/"))).toBe(true);
    expect(await pages.get("Alice")!.textContent("#grid")).toMatch(/Mallory \(not in the group\)/);
    await expectDecodingEachOther(["Alice", "Bob", "Dave"]);
    await page.close();
  });
});
