/**
 * Worker throughput benchmark (bench/sframe-worker.ts), run inside a dedicated worker as the real
 * frame-transform worker is: VP8 delta frames of one size are encrypted through a send stream of the
 * worker's FrameCrypto for a while, then all of them are decrypted through a receive stream. Both runs
 * go through the whole frame path (ordering queue, frames in flight, stats, WebCrypto AES-GCM).
 */
import { FrameCrypto } from "../../../client/worker/frame-crypto.js";
import type { TransformableFrame } from "../../../client/worker/frame-stream.js";

export interface BenchRequest {
  size: number;
  /** How long the encrypt run lasts; the decrypt run then takes the frames it produced. */
  seconds: number;
  /** Memory cap for the frames kept between the runs. */
  maxBytes: number;
  maxInFlight: number;
}

export interface BenchRun {
  frames: number;
  seconds: number;
  framesPerSecond: number;
}

export interface BenchResult {
  size: number;
  encrypt: BenchRun;
  decrypt: BenchRun;
  decryptFailures: number;
}

interface Frame extends TransformableFrame {
  data: ArrayBuffer;
}

const VP8_DELTA_META = { mimeType: "video/VP8" };

function deltaFrame(size: number, seed: number): Frame {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 131 + seed) & 0xff;
  bytes[0] = bytes[0]! | 1; // P bit set: a delta frame, 3-byte clear prefix
  return { data: bytes.buffer, getMetadata: () => VP8_DELTA_META };
}

/** Pushes the frames `next()` yields through one stream of `core`; resolves once the last came out. */
async function run(core: FrameCrypto, role: "send" | "receive", next: () => Frame | undefined): Promise<{ out: Frame[]; seconds: number }> {
  const out: Frame[] = [];
  const source = new ReadableStream<Frame>(
    {
      pull(controller) {
        const f = next();
        if (f) controller.enqueue(f);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  const start = performance.now();
  await core.attach({ streamId: 0, role, participantId: "bench" }, source, new WritableStream<Frame>({ write: (f) => void out.push(f) }));
  return { out, seconds: (performance.now() - start) / 1000 };
}

async function bench(req: BenchRequest): Promise<BenchResult> {
  const baseKey = crypto.getRandomValues(new Uint8Array(16));
  const options = { maxInFlight: req.maxInFlight, statsIntervalMs: 3_600_000 };
  const sender = new FrameCrypto(() => undefined, options);
  const receiver = new FrameCrypto(() => undefined, options);
  try {
    await sender.setEpoch({ epoch: 1n, baseKey, myLeafIndex: 0 });
    await receiver.setEpoch({ epoch: 1n, baseKey, myLeafIndex: 1 });
    const template = deltaFrame(req.size, 7);
    const maxFrames = Math.max(1, Math.floor(req.maxBytes / req.size));
    const until = performance.now() + req.seconds * 1000;
    let made = 0;
    const enc = await run(sender, "send", () => {
      if (made >= maxFrames || (made > 0 && performance.now() > until)) return undefined;
      made++;
      return { data: template.data.slice(0), getMetadata: template.getMetadata };
    });
    let i = 0;
    const dec = await run(receiver, "receive", () => enc.out[i++]);
    const failures = enc.out.length - dec.out.length;
    return {
      size: req.size,
      encrypt: { frames: enc.out.length, seconds: enc.seconds, framesPerSecond: enc.out.length / enc.seconds },
      decrypt: { frames: dec.out.length, seconds: dec.seconds, framesPerSecond: dec.out.length / dec.seconds },
      decryptFailures: failures,
    };
  } finally {
    sender.close();
    receiver.close();
  }
}

self.onmessage = (e: MessageEvent<BenchRequest>) => {
  bench(e.data).then(
    (result) => self.postMessage({ result }),
    (error: unknown) => self.postMessage({ error: error instanceof Error ? error.message : String(error) }),
  );
};
