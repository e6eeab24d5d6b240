/**
 * Every rejection leaves the receiver's state byte-identical (encode() before and after). Invalid
 * messages are forged the way a malicious member could: a valid message is changed and re-signed and
 * re-tagged with that member's own keys, so it fails exactly the rule under test.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { decode } from "../../keying/codec/reader.js";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite } from "../../keying/crypto/index.js";
import { protectContent } from "../../keying/mls/commit.js";
import { MlsValidationError } from "../../keying/mls/errors.js";
import { createExternalProposal } from "../../keying/mls/external.js";
import { signFramedContent } from "../../keying/mls/framing.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { signLeafNode } from "../../keying/mls/leaf-node.js";
import {
  ContentType,
  CredentialType,
  ExtensionType,
  ProposalOrRefType,
  ProposalType,
  WireFormat,
  decodeMLSMessage,
  encodeMLSMessage,
  encodeRequiredCapabilities,
  makeExtension,
  type Commit,
  type FramedContent,
  type ProposalOrRef,
  type PublicMessage,
} from "../../keying/mls/messages.js";
import { Harness, stateOf } from "./group-harness.js";

function publicMessageOf(bytes: Uint8Array): PublicMessage {
  const m = decode(decodeMLSMessage, bytes);
  if (m.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("not a PublicMessage");
  return m.publicMessage;
}

/** `content` signed and membership-tagged by `sender` in its current epoch, as a PublicMessage. */
async function resign(sender: MlsGroup, content: FramedContent, confirmationTag?: Uint8Array): Promise<Uint8Array> {
  const s = stateOf(sender);
  const signature = await signFramedContent(s.suite, s.signaturePrivateKey, WireFormat.mlsPublicMessage, content, s.context);
  return protectContent(s, { wireFormat: WireFormat.mlsPublicMessage, content, auth: confirmationTag ? { signature, confirmationTag } : { signature } });
}

/** A valid commit of `sender`, changed by `change` and re-signed. */
async function forgedCommit(sender: MlsGroup, change: (c: Commit) => Commit, request = {}): Promise<Uint8Array> {
  const out = await sender.commit(request);
  sender.clearPendingCommit();
  const { content, auth } = publicMessageOf(out.commit);
  if (content.contentType !== ContentType.commit) throw new Error("not a commit");
  return resign(sender, { ...content, commit: change(content.commit) }, auth.confirmationTag);
}

async function expectRejected(group: MlsGroup, message: Uint8Array, code: string): Promise<void> {
  const before = toHex(group.encode());
  await expect(group.processMessage(message)).rejects.toMatchObject({ code });
  expect(toHex(group.encode())).toBe(before);
}

let h: Harness;
let alice: MlsGroup;
let bob: MlsGroup;
let carol: MlsGroup;

beforeEach(async () => {
  h = await Harness.start("alice");
  await h.add("alice", ["bob", "carol", "dave"]);
  alice = h.get("alice").group;
  bob = h.get("bob").group;
  carol = h.get("carol").group;
});

describe("rejected handshake messages leave the state unchanged", () => {
  it("refuses malformed bytes, other groups, other epochs, bad signatures and bad membership tags", async () => {
    const good = await alice.commit();
    alice.clearPendingCommit();
    const before = toHex(bob.encode());
    await expect(bob.processMessage(good.commit.subarray(0, 40))).rejects.toMatchObject({ name: "MlsDecodeError" });
    expect(toHex(bob.encode())).toBe(before);

    const pm = publicMessageOf(good.commit);
    const reencode = (p: PublicMessage) => encode(encodeMLSMessage, { version: 1, wireFormat: WireFormat.mlsPublicMessage, publicMessage: p });
    const sig = pm.auth.signature.slice();
    sig[3]! ^= 1;
    // A wrong signature under a valid membership tag (a member forging another's content).
    const s = stateOf(alice);
    const forgedSig = await protectContent(s, { wireFormat: WireFormat.mlsPublicMessage, content: pm.content, auth: { signature: sig, confirmationTag: pm.auth.confirmationTag! } });
    await expectRejected(bob, forgedSig, "invalid-signature");
    const tag = pm.membershipTag!.slice();
    tag[0]! ^= 1;
    await expectRejected(bob, reencode({ ...pm, membershipTag: tag }), "invalid-membership-tag");
    await expectRejected(bob, reencode({ ...pm, content: { ...pm.content, epoch: pm.content.epoch + 1n } }), "wrong-epoch");
    await expectRejected(bob, reencode({ ...pm, content: { ...pm.content, groupId: utf8("other") } }), "wrong-group");
  });

  it("refuses commits that break the proposal-list rules", async () => {
    const me = alice.leafIndex;
    const bobLeaf = bob.leafIndex;
    await expectRejected(bob, await forgedCommit(alice, (c) => ({ ...c, proposals: [{ type: ProposalOrRefType.reference, reference: new Uint8Array(32) }] })), "unknown-proposal");
    await expectRejected(bob, await forgedCommit(alice, (c) => ({ ...c, proposals: [{ type: ProposalOrRefType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: me } } }] })), "invalid-proposal-list");
    await expectRejected(carol, await forgedCommit(alice, (c) => ({ ...c, proposals: [{ type: ProposalOrRefType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: 17 } } }] })), "invalid-proposal");
    // A Remove without a path.
    const noPath = await forgedCommit(alice, (c) => ({ proposals: [...c.proposals, { type: ProposalOrRefType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: bobLeaf } } }] }), { path: false });
    await expectRejected(carol, noPath, "invalid-commit");
    // Update by reference and Remove by value of the same leaf.
    const upd = await bob.proposeUpdate();
    await h.broadcast("bob", upd.message);
    const both = await forgedCommit(alice, (c) => ({
      ...c,
      proposals: [
        { type: ProposalOrRefType.reference, reference: upd.ref },
        { type: ProposalOrRefType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: bobLeaf } } },
      ],
    }));
    await expectRejected(carol, both, "invalid-proposal-list");
    // Two GroupContextExtensions.
    const gce: ProposalOrRef = { type: ProposalOrRefType.proposal, proposal: { proposalType: ProposalType.groupContextExtensions, groupContextExtensions: { extensions: [] } } };
    await expectRejected(carol, await forgedCommit(alice, (c) => ({ ...c, proposals: [gce, gce] })), "invalid-proposal-list");
  });

  it("refuses a wrong confirmation tag and a broken UpdatePath", async () => {
    const out = await alice.commit();
    alice.clearPendingCommit();
    const { content, auth } = publicMessageOf(out.commit);
    const tag = auth.confirmationTag!.slice();
    tag[0]! ^= 1;
    await expectRejected(bob, await resign(alice, content, tag), "invalid-confirmation-tag");
    if (content.contentType !== ContentType.commit || !content.commit.path) throw new Error("expected a path");
    const path = content.commit.path;
    const leafSig = path.leafNode.signature.slice();
    leafSig[1]! ^= 1;
    await expectRejected(bob, await resign(alice, { ...content, commit: { ...content.commit, path: { ...path, leafNode: { ...path.leafNode, signature: leafSig } } } }, auth.confirmationTag), "invalid-signature");
    const reusedKey = { ...path, nodes: path.nodes.map((n, i) => (i === 0 ? { ...n, encryptionKey: path.leafNode.encryptionKey } : n)) };
    await expectRejected(bob, await resign(alice, { ...content, commit: { ...content.commit, path: reusedKey } }, auth.confirmationTag), "duplicate-key");
    // Alice (leaf 0) encrypts the first path secret to Bob (leaf 1) alone: only Bob can notice a bad ciphertext.
    const ct = path.nodes[0]!.encryptedPathSecret[0]!;
    const badCt = { ...path, nodes: path.nodes.map((n, i) => (i === 0 ? { ...n, encryptedPathSecret: [{ ...ct, ciphertext: ct.ciphertext.map((b, j) => (j === 0 ? b ^ 1 : b)) }] } : n)) };
    await expectRejected(bob, await resign(alice, { ...content, commit: { ...content.commit, path: badCt } }, auth.confirmationTag), "decrypt-failed");
  });

  it("refuses invalid proposals on arrival: bad KeyPackages, duplicate keys, unsupported required capabilities, unknown external senders", async () => {
    const other = await MlsGroup.generateKeyPackage(await MlsGroup.generateIdentity(utf8("eve"), { cipherSuite: 3 }), { cipherSuite: 3 });
    await expect(alice.proposeAdd(other.message)).rejects.toMatchObject({ code: "wrong-cipher-suite" });
    const eve = await MlsGroup.generateKeyPackage(await MlsGroup.generateIdentity(utf8("eve")));
    const kp = eve.bundle.keyPackage;
    const tampered = { ...kp, signature: kp.signature.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    const forged = await resign(alice, { groupId: alice.groupId, epoch: alice.epoch, sender: { senderType: 1, leafIndex: alice.leafIndex }, authenticatedData: new Uint8Array(0), contentType: ContentType.proposal, proposal: { proposalType: ProposalType.add, add: { keyPackage: tampered } } });
    await expectRejected(bob, forged, "invalid-signature");
    // Adding a KeyPackage of an existing member's signature key.
    const twin = await MlsGroup.generateKeyPackage(h.get("carol").identity);
    await expect(alice.proposeAdd(twin.message)).rejects.toMatchObject({ code: "duplicate-key" });
    // An Update reusing the current encryption key.
    const current = stateOf(bob).tree.leafNode(bob.leafIndex)!;
    const sBob = stateOf(bob);
    const stale = await signLeafNode(sBob.suite, { ...current, leafNodeSource: 2 }, sBob.signaturePrivateKey, { groupId: bob.groupId, leafIndex: bob.leafIndex });
    const staleUpdate = await resign(bob, { groupId: bob.groupId, epoch: bob.epoch, sender: { senderType: 1, leafIndex: bob.leafIndex }, authenticatedData: new Uint8Array(0), contentType: ContentType.proposal, proposal: { proposalType: ProposalType.update, update: { leafNode: stale } } });
    await expectRejected(alice, staleUpdate, "duplicate-key");
    // required_capabilities no member supports.
    const required = makeExtension(ExtensionType.requiredCapabilities, encodeRequiredCapabilities, { extensionTypes: [0xff00], proposalTypes: [], credentialTypes: [CredentialType.basic] });
    await expect(alice.proposeGroupContextExtensions([required])).rejects.toMatchObject({ code: "unsupported-capability" });
    // An external proposal from a sender the group does not list.
    const ds = await MlsGroup.generateIdentity(utf8("ds"));
    const external = await createExternalProposal(await getCipherSuite(1), {
      groupId: alice.groupId,
      epoch: alice.epoch,
      senderIndex: 0,
      signaturePrivateKey: ds.signaturePrivateKey,
      proposal: { proposalType: ProposalType.remove, remove: { removed: 1 } },
    });
    await expectRejected(alice, external, "unknown-sender");
    // Nothing reached the caches.
    expect(alice.pendingProposals()).toHaveLength(0);
  });

  it("refuses PrivateMessages without consuming their keys, and replays", async () => {
    h = await Harness.start("alice", { handshakeWireFormat: "private" });
    await h.add("alice", ["bob", "carol"]);
    alice = h.get("alice").group;
    bob = h.get("bob").group;
    // A well-encrypted, well-signed proposal that is invalid (Remove of a blank leaf): its key is not used up.
    const s = stateOf(alice);
    const content: FramedContent = { groupId: alice.groupId, epoch: alice.epoch, sender: { senderType: 1, leafIndex: alice.leafIndex }, authenticatedData: new Uint8Array(0), contentType: ContentType.proposal, proposal: { proposalType: ProposalType.remove, remove: { removed: 9 } } };
    const signature = await signFramedContent(s.suite, s.signaturePrivateKey, WireFormat.mlsPrivateMessage, content, s.context);
    const invalid = await protectContent(s, { wireFormat: WireFormat.mlsPrivateMessage, content, auth: { signature } });
    await expectRejected(bob, invalid, "invalid-proposal");
    const good = await alice.proposeUpdate();
    expect(await bob.processMessage(good.message)).toMatchObject({ kind: "proposal", ref: good.ref });
    await h.broadcast("bob", (await bob.proposeUpdate()).message);
    await h.commit("carol");

    const msg = await alice.encryptApplicationMessage(utf8("once"));
    const raw = decode(decodeMLSMessage, msg);
    if (raw.wireFormat !== WireFormat.mlsPrivateMessage) throw new Error("expected PrivateMessage");
    const flipped = encode(encodeMLSMessage, { ...raw, privateMessage: { ...raw.privateMessage, ciphertext: raw.privateMessage.ciphertext.map((b, i) => (i === 40 ? b ^ 1 : b)) } });
    await expectRejected(bob, flipped, "decrypt-failed");
    expect(await bob.processMessage(msg)).toMatchObject({ kind: "application", data: utf8("once") });
    await expectRejected(bob, msg, "generation-consumed");
  });

  it("refuses application data while proposals are pending, and external commits when the policy says so", async () => {
    const p = await bob.proposeRemove(carol.leafIndex);
    await h.broadcast("bob", p.message);
    await expect(alice.encryptApplicationMessage(utf8("x"))).rejects.toBeInstanceOf(MlsValidationError);
    const strict = await MlsGroup.decode(carol.encode(), { policy: { allowExternalCommit: false } });
    const { commit } = await MlsGroup.joinByExternalCommit({ groupInfo: await alice.groupInfo({ ratchetTree: true }), identity: await MlsGroup.generateIdentity(utf8("zed")) });
    const before = toHex(strict.encode());
    await expect(strict.processMessage(commit)).rejects.toMatchObject({ code: "external-commit-refused" });
    expect(toHex(strict.encode())).toBe(before);
  });

  it("refuses a Welcome whose separately supplied tree does not match", async () => {
    const kp = await h.keyPackage("erin");
    const out = await alice.commit({ add: [kp.message], ratchetTreeInWelcome: false });
    await alice.mergePendingCommit();
    await expect(MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: kp.bundle, ratchetTree: bob.ratchetTree() })).rejects.toMatchObject({ code: "invalid-tree-hash" });
    const joined = await MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: kp.bundle, ratchetTree: alice.ratchetTree() });
    expect(joined.epoch).toBe(alice.epoch);
  });
});
