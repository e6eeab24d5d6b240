/**
 * The frame-transform worker (a module worker, bundled as frame-transform.js). Both transform APIs feed
 * the same frame path: RTCRtpScriptTransform delivers its streams as an `rtctransform` event whose
 * options are a StreamDescriptor; the createEncodedStreams fallback transfers them in a "streams"
 * message. Keys arrive as "epoch" messages from controller.ts.
 */
import { FrameCrypto } from "./frame-crypto.js";
import type { StreamDescriptor, ToWorker } from "./protocol.js";

interface WorkerScope {
  postMessage(message: unknown): void;
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  onrtctransform: ((e: RTCTransformEvent) => void) | null;
}

const scope = self as unknown as WorkerScope;
const core = new FrameCrypto((m) => scope.postMessage(m));

function descriptor(value: unknown): StreamDescriptor | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const { streamId, role, participantId } = value as Partial<StreamDescriptor>;
  if (!Number.isSafeInteger(streamId) || (role !== "send" && role !== "receive") || typeof participantId !== "string") return undefined;
  return { streamId: streamId!, role, participantId };
}

scope.onrtctransform = (e) => {
  const d = descriptor(e.transformer.options);
  if (!d) {
    // Leaving the streams unread stops the media: safer than passing it through in the clear.
    core.reportError("stream-failed", "transform options are not a stream descriptor");
    return;
  }
  void core.attach(d, e.transformer.readable, e.transformer.writable);
};

scope.onmessage = (e) => {
  const m = e.data;
  switch (m?.type) {
    case "configure":
      core.configure(m.options ?? {});
      break;
    case "epoch":
      void core.setEpoch(m.update);
      break;
    case "streams": {
      const d = descriptor(m.stream);
      if (d && m.readable instanceof ReadableStream && m.writable instanceof WritableStream) void core.attach(d, m.readable, m.writable);
      else core.reportError("stream-failed", "streams message without a descriptor and both streams");
      break;
    }
    case "release":
      core.release(m.streamId);
      break;
    case "count-streams":
      if (Number.isSafeInteger(m.requestId)) scope.postMessage({ type: "stream-counts", requestId: m.requestId, streams: core.streamCounts() });
      break;
  }
};
