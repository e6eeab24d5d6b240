/**
 * The encryption-bypass guard in Debian's Chromium, through the demo, the DS and the SFU. Forcing
 * RTCRtpScriptTransform reproduces Chromium 156's quirk (transforms set while answering a connection's
 * first offer are ignored, so the video sender sends clear frames and receivers decode what the
 * transform never saw): the guard must catch it, stop that media and tell the app. With the default API
 * (createEncodedStreams) every stream must be checked and trusted, with no bypass reported.
 */
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TransformCheck } from "../../client/index.js";
import { startCallServer, type CallServer } from "./call-server.js";
import { launchChromium, pollUntil, type Browser } from "./harness.js";

const POLL = { timeoutMs: 60_000, intervalMs: 500 };

interface GuardState {
  joined: boolean;
  media: string;
  selfId: string;
  api: string;
  checks: TransformCheck[];
  /** The demo's bypass alerts. */
  alerts: { participant: string; role: string; kind: string; text: string }[];
  /** data-bypass of each tile, by participant id. */
  tileBypass: Record<string, string>;
  /** Kinds of the tracks our senders carry, and our video frames sent so far. */
  sending: string[];
  framesSent: number;
  /** Live remote tracks per participant, as the call hands them to the app. */
  remoteTracks: Record<string, string[]>;
}

function readGuard(page: Page): Promise<GuardState> {
  return page.evaluate(async () => {
    const call = window.conclave.call;
    const alerts = [...document.querySelectorAll<HTMLElement>("#e2ee-alerts li")].map((li) => ({
      participant: li.dataset.participant ?? "",
      role: li.dataset.role ?? "",
      kind: li.dataset.kind ?? "",
      text: li.textContent ?? "",
    }));
    const tileBypass: Record<string, string> = {};
    document.querySelectorAll<HTMLElement>("#grid .tile").forEach((t) => {
      if (t.dataset.bypass) tileBypass[t.dataset.participant ?? "?"] = t.dataset.bypass;
    });
    if (!call) return { joined: false, media: "", selfId: "", api: "", checks: [], alerts, tileBypass, sending: [], framesSent: 0, remoteTracks: {} };
    // The media connection is internal to Call; the test reads it to see what actually leaves the page.
    const pc = (call as unknown as { sfu?: { peerConnection?: RTCPeerConnection } }).sfu?.peerConnection;
    let framesSent = 0;
    (await pc?.getStats())?.forEach((s: Record<string, unknown>) => {
      if (s.type === "outbound-rtp" && s.kind === "video") framesSent += Number(s.framesSent ?? 0);
    });
    const remoteTracks: Record<string, string[]> = {};
    for (const p of call.participants) {
      if (!p.self && p.stream) remoteTracks[p.id] = p.stream.getTracks().filter((t) => t.readyState === "live").map((t) => t.kind);
    }
    return {
      joined: true,
      media: call.media.state,
      selfId: call.selfId,
      api: call.e2ee.api,
      checks: [...call.e2ee.transformChecks],
      alerts,
      tileBypass,
      sending: (pc?.getSenders() ?? []).flatMap((s) => (s.track ? [s.track.kind] : [])),
      framesSent,
      remoteTracks,
    };
  });
}

describe("the encryption-bypass guard in a call", () => {
  let server: CallServer;
  let browser: Browser;
  const log: string[] = [];

  beforeAll(async () => {
    server = await startCallServer(log);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const diagnostics = () => `\n--- last log lines ---\n${log.slice(-40).join("\n")}`;

  async function join(name: string, room: string, transform?: string): Promise<Page> {
    const page = await browser.context.newPage();
    page.on("console", (m) => log.push(`[${name}] ${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => log.push(`[${name}] pageerror: ${e.message}`));
    await page.goto(`${server.ds.url}/?${new URLSearchParams({ name, room, ...(transform ? { transform } : {}) })}`);
    await page.click("#join");
    const state = await pollUntil(() => readGuard(page), (s) => s.joined && s.media === "connected", POLL);
    expect(state.media, `${name}'s media${diagnostics()}`).toBe("connected");
    return page;
  }

  const alertsOf = (s: GuardState, role: string) => s.alerts.filter((a) => a.role === role);
  const check = (s: GuardState, role: string, kind: string, participantId?: string) =>
    s.checks.find((c) => c.role === role && c.kind === kind && (participantId === undefined || c.participantId === participantId));

  it("with the default API every sender and receiver is checked and trusted, and no bypass is reported", { timeout: 120_000 }, async () => {
    const alice = await join("Alice", "guard-default");
    const bob = await join("Bob", "guard-default");
    for (const [name, page] of [["Alice", alice], ["Bob", bob]] as const) {
      // Two senders and the other's two receivers, each having moved enough media through the worker.
      const s = await pollUntil(() => readGuard(page), (x) => x.checks.length === 4 && x.checks.every((c) => c.verdict === "verified"), POLL);
      const what = `${name}: ${JSON.stringify(s.checks)}${diagnostics()}`;
      expect(s.api, what).toBe("encoded-streams");
      expect(s.checks.map((c) => `${c.role} ${c.kind} ${c.verdict}`).sort(), what).toEqual([
        "receive audio verified",
        "receive video verified",
        "send audio verified",
        "send video verified",
      ]);
      // Exact for frame counters (WebRTC is read before the worker); inbound audio packets may be on their way to it.
      for (const c of s.checks) if (c.role === "send" || c.kind === "video") expect(c.transformed, what).toBeGreaterThanOrEqual(c.media);
      expect(s.alerts, what).toEqual([]);
      expect(s.sending.sort()).toEqual(["audio", "video"]);
    }
    expect(log.filter((line) => line.includes("e2ee-bypass"))).toEqual([]);
    await alice.close();
    await bob.close();
  });

  it("catches Chromium's ignored script transforms: clear video is stopped, undecrypted media is not played, the app is told", { timeout: 120_000 }, async () => {
    // Carol encrypts properly (default API); Dave forces RTCRtpScriptTransform, which Chromium 156 ignores on
    // the video sender and on the receivers it sets while answering his connection's first offer.
    const carol = await join("Carol", "guard-script");
    const dave = await join("Dave", "guard-script", "script-transform");
    const carolId = (await readGuard(carol)).selfId;
    const daveId = (await readGuard(dave)).selfId;

    const caught = await pollUntil(
      () => readGuard(dave),
      (s) => s.alerts.some((a) => a.role === "send" && a.kind === "video") && alertsOf(s, "receive").length === 2,
      POLL,
    );
    const what = `Dave: ${JSON.stringify({ checks: caught.checks, alerts: caught.alerts })}${diagnostics()}`;
    expect(caught.api).toBe("script-transform");
    // His video left the page in the clear (a bypass the worker never saw) and the sender has no track any more.
    expect(check(caught, "send", "video"), what).toMatchObject({ verdict: "bypass", transformed: 0 });
    expect(check(caught, "send", "video")!.media, what).toBeGreaterThan(10);
    expect(caught.sending, what).toEqual(["audio"]);
    expect(caught.tileBypass[daveId], what).toBe("sending video");
    expect(caught.tileBypass[carolId]?.split(",").sort(), what).toEqual(["receiving audio", "receiving video"]);
    // His audio sender's transform works; Carol's audio and (ciphertext) video reached his decoders untransformed.
    expect(check(caught, "send", "audio", daveId)?.verdict, what).not.toBe("bypass");
    expect(alertsOf(caught, "receive").map((a) => `${a.participant} ${a.kind}`).sort(), what).toEqual([`${carolId} audio`, `${carolId} video`]);
    expect(check(caught, "receive", "audio", carolId)?.verdict, what).toBe("bypass");
    expect(check(caught, "receive", "video", carolId)?.verdict, what).toBe("bypass");
    expect(caught.remoteTracks[carolId] ?? [], what).toEqual([]);
    // The app heard it: Call's "error" event (code e2ee-bypass), logged by the demo (console lines arrive a bit later).
    const bypassErrors = () => Promise.resolve(log.filter((line) => line.startsWith("[Dave]") && line.includes("conclave: e2ee-bypass:")).length);
    expect(await pollUntil(bypassErrors, (n) => n >= 3, POLL), what).toBe(3);

    // The media stays stopped, also across a renegotiation (Erin joins: the SFU re-offers Dave's publishing
    // m-lines, and the SFU client does not give the caught sender its track back). His audio keeps flowing
    // and being checked meanwhile, while not one more video frame is sent (counted from a second after the
    // catch, once a frame the encoder had in hand at the track's removal is out).
    const audioSent = (s: GuardState) => check(s, "send", "audio")?.media ?? 0;
    const settled = await pollUntil(() => readGuard(dave), (s) => audioSent(s) >= audioSent(caught) + 50, POLL);
    expect(settled.framesSent - caught.framesSent, what).toBeLessThanOrEqual(2);
    const erinId = (await readGuard(await join("Erin", "guard-script"))).selfId;
    const later = await pollUntil(
      () => readGuard(dave),
      (s) => (s.remoteTracks[erinId]?.length ?? 0) === 2 && audioSent(s) >= audioSent(settled) + 100,
      POLL,
    );
    expect(later.remoteTracks[erinId]?.sort(), diagnostics()).toEqual(["audio", "video"]);
    expect(audioSent(later)).toBeGreaterThanOrEqual(audioSent(settled) + 100);
    expect(later.framesSent, what).toBe(settled.framesSent);
    expect(later.sending).toEqual(["audio"]);
    // Receivers added by that renegotiation are transformed even with script transforms: no new alert.
    expect(later.alerts).toHaveLength(3);

    // Carol's transforms all work: nothing reported, though Dave's few clear video frames reached her worker (and were dropped).
    const atCarol = await readGuard(carol);
    expect(atCarol.alerts, JSON.stringify(atCarol.checks)).toEqual([]);
    expect(check(atCarol, "send", "video")?.verdict).toBe("verified");
    expect(check(atCarol, "receive", "video", daveId)?.verdict).not.toBe("bypass");
    expect(log.filter((line) => line.startsWith("[Carol]") && line.includes("e2ee-bypass"))).toEqual([]);
  });
});
