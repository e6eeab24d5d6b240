/**
 * Conclave's browser SDK: end-to-end-encrypted calls (MLS membership + SFrame media).
 *
 *   import { Call, fetchDevToken } from "conclave/client";
 *   const call = await Call.join({ url, token, room, workerUrl });
 *
 * Lower layers for apps with their own media path: CallSession (MLS membership and chat over the DS),
 * CallE2ee (protect any RTCRtpSender/RTCRtpReceiver), the mediasoup-client adapter.
 */
export {
  Call,
  nameOf,
  type CallEpochEvent,
  type CallErrorEvent,
  type CallEvents,
  type CallJoinOptions,
  type CallMediaStats,
  type CallParticipant,
  type ChatMessage,
  type LocalMediaRequest,
  type RekeyEntry,
} from "./media/call.js";
export {
  CallE2ee,
  E2eeBypassError,
  E2eeUnsupportedError,
  type BypassGuardOptions,
  type CallE2eeEvents,
  type CallE2eeOptions,
  type E2eeSupport,
  type TransformApi,
  type TransformBypass,
  type TransformCheck,
} from "./media/e2ee.js";
export type { E2eeState, ParticipantE2ee } from "./media/e2ee-status.js";
export { SfuClient, type MediaKind, type MediaState, type RemoteTrack, type SfuClientOptions, type SfuProtection } from "./media/sfu-client.js";
export { protectConsumer, protectConsumerOptions, protectProducer, protectProducerOptions, releaseMediasoup } from "./media/mediasoup.js";
export { CallSession, type CallSessionEvents, type CallSessionOptions, type CloseReason, type EpochCause, type EpochKeyUpdate } from "./call-session.js";
export { DsConnection, type DsConnectionOptions, type TokenSource } from "./ds-connection.js";
export { DsProtocolError, DsRequestError, DsUnavailableError } from "./protocol.js";
export { fetchDevToken, type DevToken, type DevTokenRequest } from "./dev-token.js";
export type { FrameCryptoOptions, ParticipantStats } from "./worker/protocol.js";
