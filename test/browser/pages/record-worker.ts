/**
 * Fixture recorder worker: an RTCRtpScriptTransform that passes every frame on unchanged and posts a copy of
 * frames (bytes, type, metadata) to the page: a key frame, `keyFrameAfter` deltas, then (video, where the
 * transformer can ask the encoder for one) a key frame and the deltas after it, `frames` in all.
 */
interface RecordOptions {
  codec: string;
  frames: number;
  keyFrameAfter: number;
}

type EncodedFrame = RTCEncodedVideoFrame | RTCEncodedAudioFrame;

(self as unknown as { onrtctransform: (e: RTCTransformEvent) => void }).onrtctransform = (e) => {
  const t = e.transformer;
  const opts = t.options as RecordOptions;
  let posted = 0;
  // Audio frames have no key/delta type: record from the first one.
  let awaitingKey = opts.codec.startsWith("video/");
  void t.readable
    .pipeThrough(
      new TransformStream<EncodedFrame, EncodedFrame>({
        transform(frame, out) {
          const type = "type" in frame ? frame.type : "audio";
          if (type === "key") awaitingKey = false;
          if (posted < opts.frames && !awaitingKey && type !== "empty") {
            self.postMessage({ codec: opts.codec, type, data: frame.data.slice(0), metadata: frame.getMetadata() });
            posted++;
            // Some Chromium builds lack generateKeyFrame on the sender transformer: then deltas simply continue.
            if (posted === opts.keyFrameAfter + 1 && type !== "audio" && typeof t.generateKeyFrame === "function") {
              awaitingKey = true;
              void t.generateKeyFrame().catch(() => undefined);
            }
          }
          out.enqueue(frame);
        },
      }),
    )
    .pipeTo(t.writable);
};
