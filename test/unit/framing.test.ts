import { beforeAll, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite, portableProvider, type CipherSuite, type KeyPair } from "../../keying/crypto/index.js";
import {
  protectPrivateMessage,
  protectPublicMessage,
  senderDataKeyNonce,
  signFramedContent,
  unprotectPrivateMessage,
  unprotectPublicMessage,
  type EpochView,
  type PrivateMessageKeys,
} from "../../keying/mls/framing.js";
import {
  ContentType,
  ProposalType,
  ProtocolVersion,
  SenderType,
  WireFormat,
  encodePrivateContentAAD,
  encodePrivateMessageContent,
  encodeSenderData,
  encodeSenderDataAAD,
  type AuthenticatedContent,
  type FramedContent,
  type FramedContentBody,
  type GroupContext,
  type PrivateMessage,
  type PublicMessage,
} from "../../keying/mls/messages.js";
import { SecretTree } from "../../keying/mls/secret-tree.js";

let suite: CipherSuite;
let alice: KeyPair;
let mallory: KeyPair;
const SENDER = 1;
const encryptionSecret = new Uint8Array(32).fill(1);
const senderDataSecret = new Uint8Array(32).fill(2);
const membershipKey = new Uint8Array(32).fill(3);
const context: GroupContext = {
  version: ProtocolVersion.mls10,
  cipherSuite: 1,
  groupId: utf8("group"),
  epoch: 4n,
  treeHash: new Uint8Array(32).fill(5),
  confirmedTranscriptHash: new Uint8Array(32).fill(6),
  extensions: [],
};

beforeAll(async () => {
  suite = await getCipherSuite(1, portableProvider);
  alice = await suite.primitives.signatureGenerateKeyPair();
  mallory = await suite.primitives.signatureGenerateKeyPair();
});

const view = (): EpochView => ({
  context,
  signatureKeyOf: (c) => (c.sender.senderType === SenderType.member && c.sender.leafIndex === SENDER ? alice.publicKey : undefined),
});
const keys = (): PrivateMessageKeys => ({ secretTree: new SecretTree(suite, encryptionSecret, 4), senderDataSecret });

const application: FramedContentBody = { contentType: ContentType.application, applicationData: utf8("hello") };
const proposal: FramedContentBody = { contentType: ContentType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: 2 } } };

async function authenticate(body: FramedContentBody, wireFormat: WireFormat, signer = alice, extra: Partial<FramedContent> = {}): Promise<AuthenticatedContent> {
  const content: FramedContent = {
    groupId: context.groupId,
    epoch: context.epoch,
    sender: { senderType: SenderType.member, leafIndex: SENDER },
    authenticatedData: utf8("aad"),
    ...body,
    ...extra,
  } as FramedContent;
  return { wireFormat, content, auth: { signature: await signFramedContent(suite, signer.privateKey, wireFormat, content, context) } };
}

function flipLast(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  out[out.length - 1]! ^= 1;
  return out;
}

describe("PrivateMessage", () => {
  it("round-trips application data and a proposal, with padding", async () => {
    for (const body of [application, proposal]) {
      const msg = await protectPrivateMessage(suite, await authenticate(body, WireFormat.mlsPrivateMessage), keys(), { paddingLength: 13 });
      const got = await unprotectPrivateMessage(suite, msg, keys(), view());
      expect(got.content).toEqual((await authenticate(body, WireFormat.mlsPrivateMessage)).content);
    }
  });

  it("refuses a replay of a message already decrypted", async () => {
    const receiver = keys();
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage), keys());
    await unprotectPrivateMessage(suite, msg, receiver, view());
    await expect(unprotectPrivateMessage(suite, msg, receiver, view())).rejects.toMatchObject({ name: "MlsValidationError", code: "generation-consumed" });
  });

  it("rejects a tampered content ciphertext, then still accepts the genuine message", async () => {
    const receiver = keys();
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage), keys());
    // Past the first Nh bytes, so the sender data still decrypts and the content AEAD is what fails.
    expect(msg.ciphertext.length).toBeGreaterThan(suite.params.Nh);
    const tampered: PrivateMessage = { ...msg, ciphertext: flipLast(msg.ciphertext) };
    await expect(unprotectPrivateMessage(suite, tampered, receiver, view())).rejects.toMatchObject({ name: "MlsValidationError", code: "decrypt-failed" });
    await expect(unprotectPrivateMessage(suite, msg, receiver, view())).resolves.toMatchObject({ wireFormat: WireFormat.mlsPrivateMessage });
  });

  it("rejects tampered sender data and tampered authenticated data", async () => {
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage), keys());
    const cases: PrivateMessage[] = [
      { ...msg, encryptedSenderData: flipLast(msg.encryptedSenderData) },
      { ...msg, ciphertext: Uint8Array.of(msg.ciphertext[0]! ^ 1, ...msg.ciphertext.subarray(1)) },
      { ...msg, authenticatedData: utf8("other") },
      { ...msg, contentType: ContentType.proposal },
    ];
    for (const m of cases) await expect(unprotectPrivateMessage(suite, m, keys(), view())).rejects.toMatchObject({ name: "MlsValidationError", code: "decrypt-failed" });
  });

  it("rejects a message for another group or epoch before touching keys", async () => {
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage), keys());
    await expect(unprotectPrivateMessage(suite, { ...msg, epoch: 5n }, keys(), view())).rejects.toMatchObject({ code: "wrong-epoch" });
    await expect(unprotectPrivateMessage(suite, { ...msg, groupId: utf8("other") }, keys(), view())).rejects.toMatchObject({ code: "wrong-group" });
  });

  it("rejects non-zero padding as malformed", async () => {
    // Built by hand: protectPrivateMessage only ever writes zero padding.
    const ac = await authenticate(application, WireFormat.mlsPrivateMessage);
    const { content } = ac;
    const { generation, key, nonce } = await new SecretTree(suite, encryptionSecret, 4).nextKey(SENDER, "application");
    const plaintext = encode(encodePrivateMessageContent, { ...content, auth: ac.auth, paddingLength: 8 });
    plaintext[plaintext.length - 3] = 0x01;
    const reuseGuard = new Uint8Array(4);
    const { groupId, epoch, contentType, authenticatedData } = content;
    const ciphertext = await suite.aeadSeal(key, nonce, encode(encodePrivateContentAAD, { groupId, epoch, contentType, authenticatedData }), plaintext);
    const sd = await senderDataKeyNonce(suite, senderDataSecret, ciphertext);
    const encryptedSenderData = await suite.aeadSeal(
      sd.key,
      sd.nonce,
      encode(encodeSenderDataAAD, { groupId, epoch, contentType }),
      encode(encodeSenderData, { leafIndex: SENDER, generation, reuseGuard }),
    );
    const msg: PrivateMessage = { groupId, epoch, contentType, authenticatedData, encryptedSenderData, ciphertext };
    await expect(unprotectPrivateMessage(suite, msg, keys(), view())).rejects.toMatchObject({ name: "MlsDecodeError", code: "invalid-value" });
  });

  it("rejects a signature by someone else than the sender", async () => {
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage, mallory), keys());
    await expect(unprotectPrivateMessage(suite, msg, keys(), view())).rejects.toMatchObject({ name: "MlsValidationError", code: "invalid-signature" });
  });

  it("rejects a sender with no signature key (a blank leaf)", async () => {
    const msg = await protectPrivateMessage(suite, await authenticate(application, WireFormat.mlsPrivateMessage, alice, { sender: { senderType: SenderType.member, leafIndex: 2 } }), keys());
    await expect(unprotectPrivateMessage(suite, msg, keys(), view())).rejects.toMatchObject({ code: "unknown-sender" });
  });

  it("uses a fresh reuse guard, so the same content never gives the same ciphertext", async () => {
    const ac = await authenticate(application, WireFormat.mlsPrivateMessage);
    const a = await protectPrivateMessage(suite, ac, keys());
    const b = await protectPrivateMessage(suite, ac, keys());
    expect(toHex(a.ciphertext)).not.toBe(toHex(b.ciphertext));
  });
});

describe("PublicMessage", () => {
  async function signedProposal(): Promise<PublicMessage> {
    return protectPublicMessage(suite, await authenticate(proposal, WireFormat.mlsPublicMessage), membershipKey, context);
  }

  it("round-trips a proposal", async () => {
    const got = await unprotectPublicMessage(suite, await signedProposal(), membershipKey, view());
    expect(got.content.contentType).toBe(ContentType.proposal);
  });

  it("rejects a tampered membership tag, a wrong membership key and tampered content", async () => {
    const msg = await signedProposal();
    await expect(unprotectPublicMessage(suite, { ...msg, membershipTag: flipLast(msg.membershipTag!) }, membershipKey, view())).rejects.toMatchObject({
      name: "MlsValidationError",
      code: "invalid-membership-tag",
    });
    await expect(unprotectPublicMessage(suite, msg, new Uint8Array(32), view())).rejects.toMatchObject({ code: "invalid-membership-tag" });
    const content = { ...msg.content, authenticatedData: utf8("changed") };
    await expect(unprotectPublicMessage(suite, { ...msg, content }, membershipKey, view())).rejects.toMatchObject({ code: "invalid-membership-tag" });
  });

  it("rejects a tampered signature even under a valid membership tag", async () => {
    const ac = await authenticate(proposal, WireFormat.mlsPublicMessage);
    const forged: AuthenticatedContent = { ...ac, auth: { signature: flipLast(ac.auth.signature) } };
    const msg = await protectPublicMessage(suite, forged, membershipKey, context);
    await expect(unprotectPublicMessage(suite, msg, membershipKey, view())).rejects.toMatchObject({ name: "MlsValidationError", code: "invalid-signature" });
    const bySomeoneElse = await protectPublicMessage(suite, await authenticate(proposal, WireFormat.mlsPublicMessage, mallory), membershipKey, context);
    await expect(unprotectPublicMessage(suite, bySomeoneElse, membershipKey, view())).rejects.toMatchObject({ code: "invalid-signature" });
  });

  it("refuses application data and content signed for the other wire format", async () => {
    await expect(protectPublicMessage(suite, await authenticate(application, WireFormat.mlsPublicMessage), membershipKey, context)).rejects.toMatchObject({
      code: "invalid-content-type",
    });
    await expect(protectPublicMessage(suite, await authenticate(proposal, WireFormat.mlsPrivateMessage), membershipKey, context)).rejects.toMatchObject({
      code: "invalid-wire-format",
    });
    // A signature over the PrivateMessage wire format does not verify as a PublicMessage.
    const ac = await authenticate(proposal, WireFormat.mlsPrivateMessage);
    const msg = await protectPublicMessage(suite, { ...ac, wireFormat: WireFormat.mlsPublicMessage }, membershipKey, context);
    await expect(unprotectPublicMessage(suite, msg, membershipKey, view())).rejects.toMatchObject({ code: "invalid-signature" });
  });

  it("rejects a message for another epoch", async () => {
    const msg = await signedProposal();
    await expect(unprotectPublicMessage(suite, { ...msg, content: { ...msg.content, epoch: 3n } }, membershipKey, view())).rejects.toMatchObject({ code: "wrong-epoch" });
  });
});
