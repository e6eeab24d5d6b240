/**
 * RFC 9420 §6 message framing and §8.2 transcript hashes: content signatures, membership and confirmation
 * tags, and the two protections of an AuthenticatedContent (PublicMessage, PrivateMessage). The group state
 * machine decides which epoch's keys and which sender key apply; this module only applies them.
 */
import { bytesEqual, concatBytes } from "../codec/bytes.js";
import { decode } from "../codec/reader.js";
import { Writer, encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { CryptoError } from "../crypto/errors.js";
import { MlsValidationError } from "./errors.js";
import type { AeadKeyNonce } from "./key-schedule.js";
import {
  ContentType,
  ProtocolVersion,
  SenderType,
  WireFormat,
  decodePrivateMessageContent,
  decodeSenderData,
  encodeFramedContent,
  encodeFramedContentAuthData,
  encodeFramedContentTBS,
  encodePrivateContentAAD,
  encodePrivateMessageContent,
  encodeSenderData,
  encodeSenderDataAAD,
  type AuthenticatedContent,
  type FramedContent,
  type FramedContentAuthData,
  type GroupContext,
  type PrivateMessage,
  type PublicMessage,
  type Sender,
  type SenderData,
} from "./messages.js";
import type { RatchetType, SecretTree } from "./secret-tree.js";

const REUSE_GUARD_LENGTH = 4;

// ---------------------------------------------------------------------------------------------------------
// Content authentication (§6.1)

/** FramedContentTBS binds the GroupContext only for senders that are (or are becoming) members. */
function carriesGroupContext(sender: Sender): boolean {
  return sender.senderType === SenderType.member || sender.senderType === SenderType.newMemberCommit;
}

function framedContentTBS(wireFormat: WireFormat, content: FramedContent, context: GroupContext | undefined): Uint8Array {
  return encode(encodeFramedContentTBS, {
    version: ProtocolVersion.mls10,
    wireFormat,
    content,
    context: carriesGroupContext(content.sender) ? context : undefined,
  });
}

/**
 * SignWithLabel(., "FramedContentTBS", FramedContentTBS): the `signature` of FramedContentAuthData. `context`
 * may be undefined for external and new_member_proposal senders, whose signatures do not cover it.
 */
export function signFramedContent(
  suite: CipherSuite,
  signaturePrivateKey: Uint8Array,
  wireFormat: WireFormat,
  content: FramedContent,
  context: GroupContext | undefined,
): Promise<Uint8Array> {
  return suite.signWithLabel(signaturePrivateKey, "FramedContentTBS", framedContentTBS(wireFormat, content, context));
}

/** Throws MlsValidationError "invalid-signature" unless the content's signature verifies under the sender's key. */
export async function verifyFramedContentSignature(
  suite: CipherSuite,
  signaturePublicKey: Uint8Array,
  authenticated: AuthenticatedContent,
  context: GroupContext,
): Promise<void> {
  const tbs = framedContentTBS(authenticated.wireFormat, authenticated.content, context);
  if (!(await verifyOrFalse(() => suite.verifyWithLabel(signaturePublicKey, "FramedContentTBS", tbs, authenticated.auth.signature)))) {
    throw new MlsValidationError("invalid-signature", `FramedContentTBS signature of ${describeSender(authenticated.content.sender)}`);
  }
}

/** A malformed key or signature encoding is as much a failed verification as a wrong signature. */
async function verifyOrFalse(verify: () => Promise<boolean>): Promise<boolean> {
  try {
    return await verify();
  } catch (e) {
    if (e instanceof CryptoError) return false;
    throw e;
  }
}

function describeSender(sender: Sender): string {
  switch (sender.senderType) {
    case SenderType.member:
      return `member ${sender.leafIndex}`;
    case SenderType.external:
      return `external sender ${sender.senderIndex}`;
    case SenderType.newMemberProposal:
      return "new member (proposal)";
    case SenderType.newMemberCommit:
      return "new member (commit)";
  }
}

// ---------------------------------------------------------------------------------------------------------
// Confirmation tag and transcript hashes (§6.1, §8.2)

/** confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash). */
export function confirmationTag(suite: CipherSuite, confirmationKey: Uint8Array, confirmedTranscriptHash: Uint8Array): Promise<Uint8Array> {
  return suite.mac(confirmationKey, confirmedTranscriptHash);
}

/** Throws MlsValidationError "invalid-confirmation-tag" on a mismatch. */
export async function verifyConfirmationTag(
  suite: CipherSuite,
  confirmationKey: Uint8Array,
  confirmedTranscriptHash: Uint8Array,
  tag: Uint8Array,
): Promise<void> {
  if (!bytesEqual(await confirmationTag(suite, confirmationKey, confirmedTranscriptHash), tag)) {
    throw new MlsValidationError("invalid-confirmation-tag", "confirmation_tag does not match the confirmed transcript hash");
  }
}

/** The part of a Commit's AuthenticatedContent that ConfirmedTranscriptHashInput covers. */
export interface SignedCommitContent {
  readonly wireFormat: WireFormat;
  readonly content: FramedContent;
  readonly signature: Uint8Array;
}

/** confirmed_transcript_hash_[n] = Hash(interim_transcript_hash_[n-1] || ConfirmedTranscriptHashInput_[n]). */
export function confirmedTranscriptHash(suite: CipherSuite, interimTranscriptHashBefore: Uint8Array, commit: SignedCommitContent): Promise<Uint8Array> {
  if (commit.content.contentType !== ContentType.commit) throw new MlsValidationError("invalid-content-type", "transcript hashes cover commits only");
  const w = new Writer().u16(commit.wireFormat);
  encodeFramedContent(w, commit.content);
  const input = w.opaque(commit.signature).finish();
  return suite.hash(concatBytes(interimTranscriptHashBefore, input));
}

/** interim_transcript_hash_[n] = Hash(confirmed_transcript_hash_[n] || InterimTranscriptHashInput_[n]). */
export function interimTranscriptHash(suite: CipherSuite, confirmedTranscriptHash: Uint8Array, confirmationTag: Uint8Array): Promise<Uint8Array> {
  return suite.hash(concatBytes(confirmedTranscriptHash, new Writer().opaque(confirmationTag).finish()));
}

// ---------------------------------------------------------------------------------------------------------
// PublicMessage (§6.2)

/** membership_tag = MAC(membership_key, AuthenticatedContentTBM). */
export function membershipTag(suite: CipherSuite, membershipKey: Uint8Array, authenticated: AuthenticatedContent, context: GroupContext): Promise<Uint8Array> {
  const w = new Writer().raw(framedContentTBS(authenticated.wireFormat, authenticated.content, context));
  encodeFramedContentAuthData(authenticated.content.contentType)(w, authenticated.auth);
  return suite.mac(membershipKey, w.finish());
}

/** The group state a message is checked against: the epoch it claims to belong to. */
export interface EpochView {
  readonly context: GroupContext;
  /**
   * The signature key of a sender in this epoch, or undefined when there is none (a blank leaf, an unknown
   * external sender). For new members the caller reads it from the Commit's path or the Add's KeyPackage.
   */
  readonly signatureKeyOf: (content: FramedContent) => Uint8Array | undefined;
}

function checkGroupAndEpoch(groupId: Uint8Array, epoch: bigint, context: GroupContext): void {
  if (!bytesEqual(groupId, context.groupId)) throw new MlsValidationError("wrong-group", "message is for another group");
  if (epoch !== context.epoch) throw new MlsValidationError("wrong-epoch", `message epoch ${epoch}, expected ${context.epoch}`);
}

function senderKey(view: EpochView, content: FramedContent): Uint8Array {
  const key = view.signatureKeyOf(content);
  if (!key) throw new MlsValidationError("unknown-sender", `${describeSender(content.sender)} has no signature key in this epoch`);
  return key;
}

/**
 * AuthenticatedContent -> PublicMessage, adding the membership tag for member senders. Application data is
 * refused: it MUST be sent as a PrivateMessage (§6).
 */
export async function protectPublicMessage(
  suite: CipherSuite,
  authenticated: AuthenticatedContent,
  membershipKey: Uint8Array,
  context: GroupContext,
): Promise<PublicMessage> {
  if (authenticated.wireFormat !== WireFormat.mlsPublicMessage) throw new MlsValidationError("invalid-wire-format", "content was signed for another wire format");
  if (authenticated.content.contentType === ContentType.application) {
    throw new MlsValidationError("invalid-content-type", "application data must be sent as a PrivateMessage");
  }
  const { content, auth } = authenticated;
  if (content.sender.senderType !== SenderType.member) return { content, auth };
  return { content, auth, membershipTag: await membershipTag(suite, membershipKey, authenticated, context) };
}

/** PublicMessage -> AuthenticatedContent, after checking group, epoch, membership tag and signature. */
export async function unprotectPublicMessage(
  suite: CipherSuite,
  message: PublicMessage,
  membershipKey: Uint8Array,
  view: EpochView,
): Promise<AuthenticatedContent> {
  const { content, auth } = message;
  checkGroupAndEpoch(content.groupId, content.epoch, view.context);
  if (content.contentType === ContentType.application) throw new MlsValidationError("invalid-content-type", "application data in a PublicMessage");
  const authenticated: AuthenticatedContent = { wireFormat: WireFormat.mlsPublicMessage, content, auth };
  if (content.sender.senderType === SenderType.member) {
    const expected = await membershipTag(suite, membershipKey, authenticated, view.context);
    if (!message.membershipTag || !bytesEqual(expected, message.membershipTag)) {
      throw new MlsValidationError("invalid-membership-tag", `PublicMessage from ${describeSender(content.sender)}`);
    }
  }
  await verifyFramedContentSignature(suite, senderKey(view, content), authenticated, view.context);
  return authenticated;
}

// ---------------------------------------------------------------------------------------------------------
// PrivateMessage (§6.3)

/** §6.3.2: the sender data key and nonce, bound to the first KDF.Nh bytes of the content ciphertext. */
export async function senderDataKeyNonce(suite: CipherSuite, senderDataSecret: Uint8Array, ciphertext: Uint8Array): Promise<AeadKeyNonce> {
  const { Nh, Nk, Nn } = suite.params;
  const sample = ciphertext.subarray(0, Nh);
  const [key, nonce] = await Promise.all([
    suite.expandWithLabel(senderDataSecret, "key", sample, Nk),
    suite.expandWithLabel(senderDataSecret, "nonce", sample, Nn),
  ]);
  return { key, nonce };
}

/** The key schedule nonce with the reuse guard XORed into its first four bytes (§6.3.1). */
function guardedNonce(nonce: Uint8Array, reuseGuard: Uint8Array): Uint8Array {
  const out = nonce.slice();
  for (let i = 0; i < REUSE_GUARD_LENGTH; i++) out[i]! ^= reuseGuard[i]!;
  return out;
}

function ratchetFor(contentType: ContentType): RatchetType {
  return contentType === ContentType.application ? "application" : "handshake";
}

/** The secrets of one epoch that PrivateMessage protection uses. */
export interface PrivateMessageKeys {
  readonly secretTree: SecretTree;
  readonly senderDataSecret: Uint8Array;
}

export interface PrivateMessageOptions {
  /** Zero bytes appended to the content to hide its length (§6.3.1); 0 by default. */
  readonly paddingLength?: number;
}

/** AuthenticatedContent -> PrivateMessage with the sender's next key of the matching ratchet. Member senders only. */
export async function protectPrivateMessage(
  suite: CipherSuite,
  authenticated: AuthenticatedContent,
  keys: PrivateMessageKeys,
  options: PrivateMessageOptions = {},
): Promise<PrivateMessage> {
  const { content, auth } = authenticated;
  if (authenticated.wireFormat !== WireFormat.mlsPrivateMessage) throw new MlsValidationError("invalid-wire-format", "content was signed for another wire format");
  if (content.sender.senderType !== SenderType.member) throw new MlsValidationError("invalid-sender", "only members send PrivateMessages");
  const paddingLength = options.paddingLength ?? 0;
  if (!Number.isInteger(paddingLength) || paddingLength < 0) throw new RangeError("padding length must be a non-negative integer");

  const { groupId, epoch, contentType, authenticatedData } = content;
  const plaintext = encode(encodePrivateMessageContent, { ...content, auth, paddingLength });
  const { generation, key, nonce } = await keys.secretTree.nextKey(content.sender.leafIndex, ratchetFor(contentType));
  const reuseGuard = suite.randomBytes(REUSE_GUARD_LENGTH);
  const aad = encode(encodePrivateContentAAD, { groupId, epoch, contentType, authenticatedData });
  const ciphertext = await suite.aeadSeal(key, guardedNonce(nonce, reuseGuard), aad, plaintext);

  const senderData = encode(encodeSenderData, { leafIndex: content.sender.leafIndex, generation, reuseGuard });
  const sd = await senderDataKeyNonce(suite, keys.senderDataSecret, ciphertext);
  const encryptedSenderData = await suite.aeadSeal(sd.key, sd.nonce, encode(encodeSenderDataAAD, { groupId, epoch, contentType }), senderData);
  return { groupId, epoch, contentType, authenticatedData, encryptedSenderData, ciphertext };
}

/**
 * PrivateMessage -> AuthenticatedContent: decrypts the sender data, then the content with that sender's
 * key, and verifies the signature. The ratchet key is consumed only if every check passes. Failures are
 * MlsValidationError ("wrong-group", "wrong-epoch", "decrypt-failed", "unknown-sender", "invalid-signature",
 * secret tree codes) or MlsDecodeError (malformed plaintext, non-zero padding).
 */
export async function unprotectPrivateMessage(suite: CipherSuite, message: PrivateMessage, keys: PrivateMessageKeys, view: EpochView): Promise<AuthenticatedContent>;
/**
 * With `accept`: runs it on the authenticated content before the ratchet key is consumed, so a message that
 * decrypts but fails a later check (an invalid proposal, a bad commit) leaves the secret tree untouched.
 */
export async function unprotectPrivateMessage<T>(
  suite: CipherSuite,
  message: PrivateMessage,
  keys: PrivateMessageKeys,
  view: EpochView,
  accept: (authenticated: AuthenticatedContent) => Promise<T>,
): Promise<T>;
export async function unprotectPrivateMessage<T>(
  suite: CipherSuite,
  message: PrivateMessage,
  keys: PrivateMessageKeys,
  view: EpochView,
  accept?: (authenticated: AuthenticatedContent) => Promise<T>,
): Promise<T | AuthenticatedContent> {
  const { groupId, epoch, contentType, authenticatedData, ciphertext } = message;
  checkGroupAndEpoch(groupId, epoch, view.context);

  const senderData = await decryptSenderData(suite, message, keys.senderDataSecret);
  const sender: Sender = { senderType: SenderType.member, leafIndex: senderData.leafIndex };

  const aad = encode(encodePrivateContentAAD, { groupId, epoch, contentType, authenticatedData });
  return keys.secretTree.withKey(senderData.leafIndex, ratchetFor(contentType), senderData.generation, async ({ key, nonce }) => {
    const plaintext = await open(suite, { key, nonce: guardedNonce(nonce, senderData.reuseGuard) }, aad, ciphertext, "content");
    const { auth, paddingLength: _padding, ...body } = decode(decodePrivateMessageContent(contentType), plaintext);
    const content: FramedContent = { groupId, epoch, sender, authenticatedData, ...body };
    const authenticated: AuthenticatedContent = { wireFormat: WireFormat.mlsPrivateMessage, content, auth };
    await verifyFramedContentSignature(suite, senderKey(view, content), authenticated, view.context);
    return accept ? accept(authenticated) : authenticated;
  });
}

/** The SenderData of a PrivateMessage (§6.3.2): who sent it and at which generation. Consumes no key. */
export async function decryptSenderData(suite: CipherSuite, message: PrivateMessage, senderDataSecret: Uint8Array): Promise<SenderData> {
  const { groupId, epoch, contentType } = message;
  const sd = await senderDataKeyNonce(suite, senderDataSecret, message.ciphertext);
  const senderDataAAD = encode(encodeSenderDataAAD, { groupId, epoch, contentType });
  return decode(decodeSenderData, await open(suite, sd, senderDataAAD, message.encryptedSenderData, "sender data"));
}

async function open(suite: CipherSuite, k: AeadKeyNonce, aad: Uint8Array, ciphertext: Uint8Array, what: string): Promise<Uint8Array> {
  try {
    return await suite.aeadOpen(k.key, k.nonce, aad, ciphertext);
  } catch (e) {
    if (e instanceof CryptoError) throw new MlsValidationError("decrypt-failed", `PrivateMessage ${what} did not authenticate`);
    throw e;
  }
}

