/**
 * The Conclave demo: a join form, then a video grid with an E2EE badge per tile, the epoch and safety
 * code, a timeline of rekeys and an end-to-end-encrypted chat. Tokens come from the DS's development
 * endpoint (/dev/token) on this page's own origin. `window.conclave` holds the live Call and the SDK (for tests).
 */
import * as sdk from "../client/index.js";
import {
  Call,
  CallE2ee,
  fetchDevToken,
  nameOf,
  type CallParticipant,
  type ChatMessage,
  type E2eeState,
  type ParticipantE2ee,
  type RekeyEntry,
  type TransformBypass,
} from "../client/index.js";
import workerUrl from "../client/worker/frame-transform.ts?worker&url";

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};

const ui = {
  support: $("support"),
  form: $<HTMLFormElement>("join-form"),
  name: $<HTMLInputElement>("name"),
  room: $<HTMLInputElement>("room"),
  join: $<HTMLButtonElement>("join"),
  joinStatus: $("join-status"),
  call: $("call"),
  roomName: $("room-name"),
  epoch: $("epoch"),
  safetyCode: $("safety-code"),
  mediaState: $("media-state"),
  alerts: $("e2ee-alerts"),
  muteAudio: $<HTMLButtonElement>("mute-audio"),
  muteVideo: $<HTMLButtonElement>("mute-video"),
  leave: $<HTMLButtonElement>("leave"),
  grid: $("grid"),
  timeline: $("timeline"),
  chatLog: $("chat-log"),
  chatForm: $<HTMLFormElement>("chat-form"),
  chatInput: $<HTMLInputElement>("chat-input"),
};

const BADGE: Record<E2eeState | "none", string> = {
  decrypting: "E2EE: decrypting",
  "waiting-for-keys": "E2EE: waiting for keys",
  failing: "E2EE: failing",
  none: "E2EE: no media yet",
};

declare global {
  interface Window {
    /** The live call, and the SDK with its worker URL, for tests and the console. */
    conclave: { call: Call | undefined; sdk: typeof sdk; workerUrl: string };
  }
}
window.conclave = { call: undefined, sdk, workerUrl };

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const time = (ms: number) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

// ---------------------------------------------------------------------------------------------------------
// Join form

const params = new URLSearchParams(location.search);
ui.room.value = params.get("room") ?? "demo";
ui.name.value = params.get("name") ?? sessionStorage.getItem("conclave-name") ?? "";

const support = CallE2ee.support();
if (support.api) {
  ui.support.textContent = `frames encrypted via ${support.api === "script-transform" ? "RTCRtpScriptTransform" : "createEncodedStreams"}`;
} else {
  ui.support.textContent = "media cannot be end-to-end encrypted in this browser";
  ui.support.classList.add("bad");
  ui.join.disabled = true;
  ui.joinStatus.textContent = support.reason ?? "";
}

ui.form.addEventListener("submit", (e) => {
  e.preventDefault();
  void join(ui.name.value.trim(), ui.room.value.trim());
});

async function join(name: string, room: string): Promise<void> {
  if (!name || !room) return;
  ui.join.disabled = true;
  ui.joinStatus.textContent = "Joining…";
  sessionStorage.setItem("conclave-name", name);
  try {
    const call = await Call.join({
      url: location.origin,
      token: async () => (await fetchDevToken(location.origin, { name, rooms: [room] })).token,
      room,
      workerUrl,
      media: { audio: true, video: { width: 640, height: 360, frameRate: 24 } },
      // ?transform=encoded-streams forces Chromium's older API (to compare the two).
      ...(params.get("transform") === "encoded-streams" || params.get("transform") === "script-transform"
        ? { transformApi: params.get("transform") as "encoded-streams" | "script-transform" }
        : {}),
    });
    showCall(call);
  } catch (err) {
    ui.joinStatus.textContent = `Could not join: ${err instanceof Error ? err.message : String(err)}`;
    ui.join.disabled = !support.api;
  }
}

// ---------------------------------------------------------------------------------------------------------
// In the call

interface Tile {
  readonly root: HTMLElement;
  readonly video: HTMLVideoElement;
  readonly name: HTMLElement;
  readonly badge: HTMLElement;
  readonly detail: HTMLElement;
}

function showCall(call: Call): void {
  window.conclave.call = call;
  ui.form.hidden = true;
  ui.call.hidden = false;
  ui.roomName.textContent = call.room;
  ui.timeline.replaceChildren();
  ui.chatLog.replaceChildren();
  ui.grid.replaceChildren();
  ui.alerts.replaceChildren();
  ui.alerts.hidden = true;
  const tiles = new Map<string, Tile>();
  const e2ee = new Map<string, ParticipantE2ee>();
  /** Media stopped because it bypassed encryption, by participant: "sending video", "receiving audio", ... */
  const bypassed = new Map<string, string[]>();
  const offs: (() => void)[] = [];

  const renderEpoch = () => {
    ui.epoch.textContent = call.epoch === undefined ? "–" : String(call.epoch);
    ui.safetyCode.textContent = call.safetyCode ?? "–";
  };

  const renderBadge = (id: string) => {
    const tile = tiles.get(id);
    if (!tile) return;
    const status = e2ee.get(id);
    const state = status?.state ?? "none";
    const self = id === call.selfId;
    tile.badge.textContent = self ? (state === "decrypting" ? "E2EE: encrypting" : state === "failing" ? "E2EE: failing" : "E2EE: waiting for keys") : BADGE[state];
    tile.badge.className = `badge ${state}`;
    tile.root.dataset.e2ee = state;
    const stopped = bypassed.get(id);
    if (stopped) {
      tile.badge.textContent = `E2EE bypass: ${stopped.join(", ")} stopped`;
      tile.badge.className = "badge bypassed";
      tile.root.dataset.bypass = stopped.join(",");
    }
    tile.detail.textContent = status
      ? `${status.frames} frames ${self ? "encrypted" : "decrypted"} · ${status.failures} failed${status.held ? ` · ${status.released}/${status.held} held frames released` : ""}`
      : "";
    tile.detail.title = status?.lastError ?? "";
  };

  const renderParticipants = (list: readonly CallParticipant[]) => {
    const ids = new Set(list.map((p) => p.id));
    for (const [id, tile] of tiles) {
      if (ids.has(id)) continue;
      tile.root.remove();
      tiles.delete(id);
    }
    for (const p of list) {
      let tile = tiles.get(p.id);
      if (!tile) {
        const root = el("figure", "tile");
        root.dataset.participant = p.id;
        const video = el("video");
        video.autoplay = true;
        video.playsInline = true;
        video.muted = p.self;
        const caption = el("figcaption");
        const name = el("span", "name");
        const badge = el("span", "badge");
        const detail = el("small", "detail");
        caption.append(name, badge, detail);
        root.append(video, caption);
        tile = { root, video, name, badge, detail };
        tiles.set(p.id, tile);
        if (p.self) ui.grid.prepend(root);
        else ui.grid.append(root);
      }
      tile.name.textContent = p.self ? `${p.name} (you)` : p.leafIndex === undefined ? `${p.name} (not in the group)` : p.name;
      tile.root.classList.toggle("outsider", p.leafIndex === undefined);
      if (tile.video.srcObject !== (p.stream ?? null)) tile.video.srcObject = p.stream ?? null;
      renderBadge(p.id);
    }
  };

  const addRekey = (r: RekeyEntry) => {
    const what =
      r.cause === "created"
        ? "you started the call"
        : r.cause === "joined"
          ? "you joined"
          : r.cause === "rejoined"
            ? "you rejoined"
            : [r.joined.length ? `${r.joined.join(", ")} joined` : "", r.left.length ? `${r.left.join(", ")} left` : ""].filter(Boolean).join("; ") || "keys updated";
    const item = el("li");
    item.dataset.epoch = String(r.epoch);
    item.append(el("b", undefined, `epoch ${r.epoch}`), el("span", undefined, ` ${what}`), el("small", undefined, ` · new keys in ${r.ms} ms · ${time(r.keysAt)}`));
    ui.timeline.prepend(item);
  };

  const addChat = (m: ChatMessage) => {
    const item = el("li", m.self ? "self" : undefined);
    item.append(el("b", undefined, m.self ? "you" : m.from.name), el("span", undefined, ` ${m.text}`), el("small", undefined, ` ${time(m.at)}`));
    ui.chatLog.append(item);
    ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
  };

  const renderMute = () => {
    const { audio, video } = call.muted;
    ui.muteAudio.textContent = audio ? "Unmute mic" : "Mute mic";
    ui.muteVideo.textContent = video ? "Start camera" : "Stop camera";
    ui.muteAudio.setAttribute("aria-pressed", String(audio));
    ui.muteVideo.setAttribute("aria-pressed", String(video));
  };

  const addBypass = (b: TransformBypass) => {
    const what = `${b.role === "send" ? "sending" : "receiving"} ${b.kind}`;
    bypassed.set(b.participantId, [...(bypassed.get(b.participantId) ?? []), what]);
    const item = el(
      "li",
      undefined,
      b.role === "send"
        ? `Your ${b.kind} left without encryption (${b.media} ${b.counter}, ${b.transformed} encrypted): this browser bypassed the encryption transform. Your ${b.kind} is no longer sent.`
        : `${b.kind === "video" ? "Video" : "Audio"} from ${nameOf(b.participantId)} reached the decoder without decryption: this browser bypassed the transform. It is no longer played.`,
    );
    item.dataset.participant = b.participantId;
    item.dataset.role = b.role;
    item.dataset.kind = b.kind;
    ui.alerts.append(item);
    ui.alerts.hidden = false;
    renderBadge(b.participantId);
  };

  const renderMedia = () => {
    const { state, reason } = call.media;
    ui.mediaState.textContent = `media: ${state}${reason ? ` (${reason})` : ""}`;
    ui.mediaState.dataset.state = state;
  };

  offs.push(
    call.on("epoch", renderEpoch),
    call.on("participants", renderParticipants),
    call.on("rekey", addRekey),
    call.on("chat", addChat),
    call.on("muted", renderMute),
    call.on("media", renderMedia),
    call.on("bypass", addBypass),
    call.on("e2ee", (list) => {
      for (const s of list) e2ee.set(s.participantId, s);
      for (const id of tiles.keys()) renderBadge(id);
    }),
    call.on("error", (e) => console.warn(`conclave: ${e.code}: ${e.message}`)),
    call.on("closed", ({ reason }) => {
      for (const off of offs) off();
      window.conclave.call = undefined;
      ui.call.hidden = true;
      ui.form.hidden = false;
      ui.join.disabled = false;
      ui.joinStatus.textContent = reason === "left" ? "You left the call." : `The call ended (${reason}).`;
    }),
  );
  for (const r of call.timeline) addRekey(r);
  renderEpoch();
  renderParticipants(call.participants);
  renderMute();
  renderMedia();
  ui.joinStatus.textContent = "";

  ui.muteAudio.onclick = () => call.setMuted("audio", !call.muted.audio);
  ui.muteVideo.onclick = () => call.setMuted("video", !call.muted.video);
  ui.leave.onclick = () => {
    ui.leave.disabled = true;
    call.leave().finally(() => (ui.leave.disabled = false));
  };
  ui.chatForm.onsubmit = (e) => {
    e.preventDefault();
    const text = ui.chatInput.value.trim();
    if (!text) return;
    ui.chatInput.value = "";
    call.sendChat(text).catch((err: unknown) => addChat({ from: { id: undefined, name: "not sent" }, text: `${text} (${String(err)})`, self: true, epoch: 0n, at: Date.now() }));
  };
}
