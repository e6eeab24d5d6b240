import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { encode } from "../../../keying/codec/writer.js";
import { getCipherSuite, type CipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import {
  protectPrivateMessage,
  protectPublicMessage,
  signFramedContent,
  unprotectPrivateMessage,
  unprotectPublicMessage,
  type EpochView,
} from "../../../keying/mls/framing.js";
import {
  ContentType,
  ProtocolVersion,
  SenderType,
  WireFormat,
  decodeCommit,
  decodeMLSMessage,
  decodeProposal,
  encodeCommit,
  encodeMLSMessage,
  encodeProposal,
  type AuthenticatedContent,
  type FramedContent,
  type FramedContentBody,
  type GroupContext,
  type MLSMessage,
  type PrivateMessage,
  type PublicMessage,
} from "../../../keying/mls/messages.js";
import { SecretTree } from "../../../keying/mls/secret-tree.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface MessageProtectionCase {
  cipher_suite: number;
  group_id: string;
  epoch: number;
  tree_hash: string;
  confirmed_transcript_hash: string;
  signature_priv: string;
  signature_pub: string;
  encryption_secret: string;
  sender_data_secret: string;
  membership_key: string;
  proposal: string;
  proposal_pub: string;
  proposal_priv: string;
  commit: string;
  commit_pub: string;
  commit_priv: string;
  application: string;
  application_priv: string;
}

const SENDER_LEAF = 1;

function publicOf(hex: string): PublicMessage {
  const m = decode(decodeMLSMessage, fromHex(hex));
  if (m.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("expected a PublicMessage");
  return m.publicMessage;
}

function privateOf(hex: string): PrivateMessage {
  const m = decode(decodeMLSMessage, fromHex(hex));
  if (m.wireFormat !== WireFormat.mlsPrivateMessage) throw new Error("expected a PrivateMessage");
  return m.privateMessage;
}

/** The encoded Proposal, Commit or application data carried by the content. */
function rawBody(content: FramedContent): Uint8Array {
  switch (content.contentType) {
    case ContentType.proposal:
      return encode(encodeProposal, content.proposal);
    case ContentType.commit:
      return encode(encodeCommit, content.commit);
    case ContentType.application:
      return content.applicationData;
  }
}

/** A round trip through the wire encoding, so what is checked is what a peer would receive. */
function wire(m: MLSMessage): MLSMessage {
  return decode(decodeMLSMessage, encode(encodeMLSMessage, m));
}

/**
 * §6: for a proposal, a commit and application data sent by leaf 1 of a two-member group, unprotect the
 * given messages, and protect our own and unprotect them again (application data only as a PrivateMessage).
 */
async function checkCase(suite: CipherSuite, c: MessageProtectionCase): Promise<void> {
  const context: GroupContext = {
    version: ProtocolVersion.mls10,
    cipherSuite: c.cipher_suite,
    groupId: fromHex(c.group_id),
    epoch: BigInt(c.epoch),
    treeHash: fromHex(c.tree_hash),
    confirmedTranscriptHash: fromHex(c.confirmed_transcript_hash),
    extensions: [],
  };
  const signaturePub = fromHex(c.signature_pub);
  const view: EpochView = { context, signatureKeyOf: (content) => (content.sender.senderType === SenderType.member && content.sender.leafIndex === SENDER_LEAF ? signaturePub : undefined) };
  const membershipKey = fromHex(c.membership_key);
  const senderDataSecret = fromHex(c.sender_data_secret);
  const freshKeys = () => ({ secretTree: new SecretTree(suite, fromHex(c.encryption_secret), 2), senderDataSecret });

  const bodies: [string, FramedContentBody, string, string | undefined, string][] = [
    ["proposal", { contentType: ContentType.proposal, proposal: decode(decodeProposal, fromHex(c.proposal)) }, c.proposal, c.proposal_pub, c.proposal_priv],
    ["commit", { contentType: ContentType.commit, commit: decode(decodeCommit, fromHex(c.commit)) }, c.commit, c.commit_pub, c.commit_priv],
    ["application", { contentType: ContentType.application, applicationData: fromHex(c.application) }, c.application, undefined, c.application_priv],
  ];
  for (const [name, body, expected, pubHex, privHex] of bodies) {
    const sign = async (wireFormat: WireFormat): Promise<AuthenticatedContent> => {
      const content: FramedContent = { groupId: context.groupId, epoch: context.epoch, sender: { senderType: SenderType.member, leafIndex: SENDER_LEAF }, authenticatedData: new Uint8Array(0), ...body };
      const signature = await signFramedContent(suite, fromHex(c.signature_priv), wireFormat, content, context);
      // The vector gives no confirmation key; any tag will do, as only the signature and membership tag are checked here.
      const auth = content.contentType === ContentType.commit ? { signature, confirmationTag: new Uint8Array(suite.params.Nh) } : { signature };
      return { wireFormat, content, auth };
    };

    if (pubHex !== undefined) {
      const theirs = await unprotectPublicMessage(suite, publicOf(pubHex), membershipKey, view);
      expectBytes(`${name}_pub content`, rawBody(theirs.content), expected);
      const mine = await protectPublicMessage(suite, await sign(WireFormat.mlsPublicMessage), membershipKey, context);
      const received = wire({ version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPublicMessage, publicMessage: mine });
      if (received.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("wire format changed");
      expectBytes(`own ${name} PublicMessage content`, rawBody((await unprotectPublicMessage(suite, received.publicMessage, membershipKey, view)).content), expected);
    } else {
      const refused = await protectPublicMessage(suite, await sign(WireFormat.mlsPublicMessage), membershipKey, context).then(
        () => false,
        () => true,
      );
      if (!refused) throw new Error(`${name} was accepted as a PublicMessage`);
    }

    const theirs = await unprotectPrivateMessage(suite, privateOf(privHex), freshKeys(), view);
    expectBytes(`${name}_priv content`, rawBody(theirs.content), expected);
    const mine = await protectPrivateMessage(suite, await sign(WireFormat.mlsPrivateMessage), freshKeys(), { paddingLength: 7 });
    const received = wire({ version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsPrivateMessage, privateMessage: mine });
    if (received.wireFormat !== WireFormat.mlsPrivateMessage) throw new Error("wire format changed");
    expectBytes(`own ${name} PrivateMessage content`, rawBody((await unprotectPrivateMessage(suite, received.privateMessage, freshKeys(), view)).content), expected);
  }
}

const kind: VectorKind = {
  kind: "message-protection",
  usesProvider: true,
  matches: (f) => f.name === "message-protection.json",
  run: (f, provider) =>
    eachCase(f.json as MessageProtectionCase[], async (c) => checkCase(await getCipherSuite(c.cipher_suite as CipherSuiteId, provider), c)),
};

export default kind;
