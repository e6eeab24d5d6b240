/**
 * keying/sframe: RFC 9605 SFrame with MLS keying (§5.2), codec-aware media framing and MLS-SRTP.
 *
 * Typical use in a frame-transform worker:
 *   const keyring = new EpochKeyring({ sendContext: 0n });        // one per stream; a sendContext never
 *                                                                   // used twice by one member (else CTRs repeat)
 *   await keyring.addEpoch(epoch, myLeafIndex, baseKeyBytes);      // at every MLS epoch
 *   out = await protectFrame(keyring.context, keyring.sendKid!, "vp8", frame);
 *   ({ frame } = await unprotectFrame(keyring.context, "vp8", received));   // "unknown-kid": hold and retry
 *   keyring.retireEpoch(oldEpoch);                                  // when its grace ends
 */
export { SFrameError, type SFrameErrorCode } from "./errors.js";
export { decodeHeader, encodeHeader, headerLength, MAX_HEADER_LENGTH, MAX_UINT64, type SFrameHeader } from "./header.js";
export { DEFAULT_SFRAME_SUITE, SFRAME_SUITE_IDS, SFRAME_SUITES, sframeSuite, type SFrameSuite, type SFrameSuiteId } from "./suites.js";
export { deriveKeySalt, KeyCache, sframeAad, sframeKeyLabel, sframeNonce, sframeSaltLabel, type SFrameKeyMaterial } from "./keys.js";
export { webCryptoAead, type AeadBackend, type AeadKey } from "./aead.js";
export { nodeCryptoAead } from "./aead-node.js";
export { ReplayWindow } from "./replay.js";
export {
  DEFAULT_MAX_RECEIVE_KEYS,
  DEFAULT_REPLAY_WINDOW,
  SFrameContext,
  type SFrameContextOptions,
  type SFrameDecrypted,
} from "./context.js";
export {
  EpochKeyring,
  MAX_KID_CONTEXT,
  MAX_SFRAME_EPOCHS,
  MAX_SFRAME_LEAVES,
  mlsBaseKey,
  mlsKid,
  parseMlsKid,
  SFRAME_BASE_KEY_LABEL,
  SFRAME_EPOCH_BITS,
  SFRAME_INDEX_BITS,
  type EpochKeyringOptions,
  type MlsExporter,
  type MlsKid,
} from "./mls.js";
export {
  exportSrtpMasterKey,
  MLS_SRTP_EXPORTER_LABEL,
  mlsSrtpContext,
  SRTP_PROFILES,
  type SrtpMasterKey,
  type SrtpProfile,
  type SrtpProfileName,
} from "./srtp.js";
export { codecFromMimeType, MEDIA_CODECS, protectFrame, unprotectFrame, type MediaCodec, type UnprotectedFrame } from "./media.js";
