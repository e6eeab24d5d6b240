/**
 * Fixture recorder page: sends the fake camera or microphone over a loopback pair with one codec forced,
 * with the record worker as sender transform, and returns the posted frames (bytes as base64).
 */
import { createPeerPair, fakeMedia } from "./peer-pair.js";

export interface RecordedFrame {
  codec: string;
  type: "key" | "delta" | "audio";
  data: string;
  metadata: Record<string, unknown>;
}

function toBase64(buf: ArrayBuffer): string {
  let s = "";
  const b = new Uint8Array(buf);
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

async function recordFrames(mimeType: string, frames: number, keyFrameAfter: number): Promise<RecordedFrame[]> {
  const kind = mimeType.startsWith("audio/") ? "audio" : "video";
  const media = await fakeMedia(kind === "video", kind === "audio");
  const worker = new Worker("/record-worker.js", { type: "module" });
  const got: RecordedFrame[] = [];
  const done = new Promise<void>((resolve) => {
    worker.onmessage = (e: MessageEvent<Omit<RecordedFrame, "data"> & { data: ArrayBuffer }>) => {
      if (got.length >= frames) return;
      got.push({ ...e.data, data: toBase64(e.data.data) });
      if (got.length === frames) resolve();
    };
  });
  const pair = await createPeerPair({
    tracks: media.getTracks(),
    codecs: { [kind]: mimeType },
    attachSenders(senders) {
      senders[0]!.transform = new RTCRtpScriptTransform(worker, { codec: mimeType, frames, keyFrameAfter });
    },
  });
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`${mimeType}: only ${got.length}/${frames} frames recorded`)), 60_000),
  );
  try {
    await Promise.race([done, timeout]);
  } finally {
    pair.close();
    media.getTracks().forEach((t) => t.stop());
    worker.terminate();
  }
  return got;
}

Object.assign(globalThis, { recordFrames, conclaveReady: true });
