/**
 * SFU options and the werift PeerConnection configuration built from them.
 */
import {
  useAV1,
  useH264,
  useOPUS,
  useSdesMid,
  useVP8,
  useVP9,
  type RTCPeerConnectionConfig,
  type RTCRtpCodecParameters,
} from "werift";

export type VideoCodecName = "VP8" | "VP9" | "H264" | "AV1";

export interface SfuIceOptions {
  /**
   * Host candidate addresses added to the ones werift discovers. werift skips loopback, so on a machine whose
   * only interface is `lo` nothing would be offered without this. Default ["127.0.0.1"].
   */
  additionalHostAddresses?: string[];
  /** UDP port range for the SFU's sockets (e.g. to match a firewall rule). Default: any free port. */
  portRange?: [number, number];
  /** Gather IPv6 host candidates too. Default false. */
  useIpv6?: boolean;
}

export interface SfuOptions {
  ice?: SfuIceOptions;
  /**
   * The one video codec offered. A single codec per SFU means a forwarded packet's payload type can be rewritten
   * to the subscriber's without transcoding or codec matching. Default VP8.
   */
  videoCodec?: VideoCodecName;
  /** Default 16. */
  maxParticipantsPerRoom?: number;
  /** Rooms with at least one media session. Default 256. */
  maxRooms?: number;
  /** How long a client may take to answer an offer before its media session is ended. Default 20000. */
  negotiationTimeoutMs?: number;
  /** Diagnostics. Details name rooms, participants and reasons, never SDP (it carries ICE passwords). */
  log?: (event: string, detail: Record<string, unknown>) => void;
}

export interface ResolvedSfuOptions {
  /** A fresh configuration per connection: werift keeps per-connection state (payload types) in the codec objects. */
  peerConfig(): RTCPeerConnectionConfig;
  maxParticipantsPerRoom: number;
  maxRooms: number;
  negotiationTimeoutMs: number;
  log: (event: string, detail: Record<string, unknown>) => void;
}

function videoCodec(name: VideoCodecName): RTCRtpCodecParameters {
  switch (name) {
    case "VP8":
      return useVP8();
    case "VP9":
      return useVP9();
    case "H264":
      return useH264();
    case "AV1":
      return useAV1();
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`SFU option ${name} must be a positive integer`);
  return value;
}

export function resolveOptions(options: SfuOptions = {}): ResolvedSfuOptions {
  const ice = options.ice ?? {};
  const video = options.videoCodec ?? "VP8";
  return {
    peerConfig: () => ({
      // Everyone reaches the SFU on its host candidates; the default public STUN server would only slow
      // gathering down (and fail offline).
      iceServers: [],
      iceAdditionalHostAddresses: ice.additionalHostAddresses ?? ["127.0.0.1"],
      icePortRange: ice.portRange,
      iceUseIpv6: ice.useIpv6 ?? false,
      // One transport per client: fewer sockets and one DTLS handshake however many tracks are forwarded.
      bundlePolicy: "max-bundle",
      codecs: { audio: [useOPUS()], video: [videoCodec(video)] },
      headerExtensions: { audio: [useSdesMid()], video: [useSdesMid()] },
    }),
    maxParticipantsPerRoom: positiveInt(options.maxParticipantsPerRoom, 16, "maxParticipantsPerRoom"),
    maxRooms: positiveInt(options.maxRooms, 256, "maxRooms"),
    negotiationTimeoutMs: positiveInt(options.negotiationTimeoutMs, 20_000, "negotiationTimeoutMs"),
    log: options.log ?? (() => undefined),
  };
}
