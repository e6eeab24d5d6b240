/**
 * Two RTCPeerConnections in one page, signalled directly: `sender` sends the given tracks, `receiver` receives.
 * Shared by the fixture recorder and the worker loopback test page.
 */
export interface PeerPair {
  sender: RTCPeerConnection;
  receiver: RTCPeerConnection;
  senders: RTCRtpSender[];
  /** The receivers, in the order of the tracks given. */
  receivers: RTCRtpReceiver[];
  close(): void;
}

export interface PeerPairOptions {
  tracks: MediaStreamTrack[];
  /** Preferred codec per kind (mimeType, e.g. "video/VP9"), applied to the sending transceivers. */
  codecs?: Partial<Record<"audio" | "video", string>>;
  /** Needed by Chromium's createEncodedStreams fallback. */
  encodedInsertableStreams?: boolean;
  /**
   * Transforms must be attached here: Chromium ignores a transform set on a sender after its
   * setLocalDescription, or on a receiver after the answer is applied locally.
   */
  attachSenders?(senders: RTCRtpSender[]): void | Promise<void>;
  attachReceivers?(receivers: RTCRtpReceiver[]): void | Promise<void>;
}

export async function createPeerPair(opts: PeerPairOptions): Promise<PeerPair> {
  const config = { encodedInsertableStreams: opts.encodedInsertableStreams === true } as RTCConfiguration;
  const sender = new RTCPeerConnection(config);
  const receiver = new RTCPeerConnection(config);
  sender.onicecandidate = (e) => void (e.candidate && receiver.addIceCandidate(e.candidate));
  receiver.onicecandidate = (e) => void (e.candidate && sender.addIceCandidate(e.candidate));

  const senders: RTCRtpSender[] = [];
  for (const track of opts.tracks) {
    const t = sender.addTransceiver(track, { direction: "sendonly" });
    const wanted = opts.codecs?.[track.kind as "audio" | "video"];
    if (wanted) {
      const caps = RTCRtpSender.getCapabilities(track.kind)?.codecs ?? [];
      const chosen = caps.filter((c) => c.mimeType.toLowerCase() === wanted.toLowerCase());
      if (chosen.length === 0) throw new Error(`codec ${wanted} not supported by this browser`);
      t.setCodecPreferences(chosen);
    }
    senders.push(t.sender);
  }
  await opts.attachSenders?.(senders);
  await sender.setLocalDescription();
  await receiver.setRemoteDescription(sender.localDescription!);
  // Transceivers on the receiving side exist once the offer is applied, in m-line order.
  const receivers = receiver.getTransceivers().map((t) => t.receiver);
  await opts.attachReceivers?.(receivers);
  await receiver.setLocalDescription();
  await sender.setRemoteDescription(receiver.localDescription!);
  return {
    sender,
    receiver,
    senders,
    receivers,
    close() {
      sender.close();
      receiver.close();
    },
  };
}

/** The fake camera/microphone (Chromium's --use-fake-device-for-media-stream). */
export async function fakeMedia(video: boolean, audio: boolean): Promise<MediaStream> {
  return navigator.mediaDevices.getUserMedia({
    video: video ? { width: 320, height: 240, frameRate: 30 } : false,
    audio,
  });
}
