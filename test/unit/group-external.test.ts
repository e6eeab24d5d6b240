import { describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { getCipherSuite } from "../../keying/crypto/index.js";
import { createExternalProposal, createNewMemberAddProposal, externalSenderOf, externalSendersExtension } from "../../keying/mls/external.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { ProposalType, SenderType, type Proposal } from "../../keying/mls/messages.js";
import { Harness } from "./group-harness.js";

describe("external commits", () => {
  it("lets a new member join by external commit, with the tree served separately", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"]);
    const alice = h.get("alice").group;
    const groupInfo = await alice.groupInfo();
    const identity = await h.identity("kate");
    const joined = await MlsGroup.joinByExternalCommit({ groupInfo, ratchetTree: alice.ratchetTree(), identity });
    expect(joined.change).toMatchObject({ external: true, committer: 10, removed: [] });
    const results = await h.broadcast(undefined, joined.commit);
    expect(results.get("bob")).toMatchObject({ kind: "commit", external: true, committer: 10, sender: { senderType: SenderType.newMemberCommit } });
    h.members.push({ name: "kate", identity, group: joined.group });
    await h.checkAgreement();
    // The joiner is a full member: it commits and sends application data.
    await h.commit("kate", { remove: [h.get("dave").group.leafIndex] });
    const msg = await joined.group.encryptApplicationMessage(utf8("hello"));
    expect(await h.get("judy").group.processMessage(msg)).toMatchObject({ kind: "application", data: utf8("hello"), sender: 10 });
  });

  it("resyncs a member that lost its state: the external commit removes its old leaf", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob", "carol"]);
    const bob = h.get("bob");
    const oldLeaf = bob.group.leafIndex;
    const alice = h.get("alice").group;
    const joined = await MlsGroup.joinByExternalCommit({ groupInfo: await alice.groupInfo({ ratchetTree: true }), identity: bob.identity, resync: true });
    expect(joined.change.removed.map((m) => m.leafIndex)).toEqual([oldLeaf]);
    // The stale bob sees its own removal; the others move on with the new bob.
    expect(await bob.group.processMessage(joined.commit)).toMatchObject({ kind: "commit", removedSelf: true });
    expect(bob.group.active).toBe(false);
    await expect(bob.group.encryptApplicationMessage(utf8("x"))).rejects.toMatchObject({ code: "group-inactive" });
    for (const name of ["alice", "carol"]) await h.get(name).group.processMessage(joined.commit);
    bob.group = joined.group;
    await h.checkAgreement();
    expect(h.get("alice").group.members()).toHaveLength(3);
    // Without resync the same signature key cannot join twice.
    const again = await MlsGroup.joinByExternalCommit({ groupInfo: await alice.groupInfo({ ratchetTree: true }), identity: bob.identity });
    await expect(alice.processMessage(again.commit)).rejects.toMatchObject({ code: "duplicate-key" });
  });

  it("injects external PSKs in an external commit", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob"]);
    for (const m of h.members) await m.group.storeExternalPsk(utf8("shared"), new Uint8Array(32).fill(1));
    const identity = await h.identity("carol");
    const joined = await MlsGroup.joinByExternalCommit({
      groupInfo: await h.get("alice").group.groupInfo({ ratchetTree: true }),
      identity,
      psks: [{ pskId: utf8("shared"), psk: new Uint8Array(32).fill(1) }],
    });
    expect(joined.change.psks).toHaveLength(1);
    await h.broadcast(undefined, joined.commit);
    h.members.push({ name: "carol", identity, group: joined.group });
    await h.checkAgreement();
  });
});

describe("external senders and new-member proposals", () => {
  it("takes Remove and Add proposals from the delivery service, an external sender", async () => {
    const ds = await MlsGroup.generateIdentity(utf8("ds"));
    const other = await MlsGroup.generateIdentity(utf8("other-ds"));
    const h = await Harness.start("alice", { extensions: [externalSendersExtension([externalSenderOf(other), externalSenderOf(ds)])] });
    await h.add("alice", ["bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"]);
    const suite = await getCipherSuite(1);
    const alice = h.get("alice").group;
    const carolLeaf = h.get("carol").group.leafIndex;
    // Signed by the DS as external_senders[senderIndex], for the group's current epoch.
    const fromDs = (senderIndex: number, proposal: Proposal) =>
      createExternalProposal(suite, { groupId: alice.groupId, epoch: alice.epoch, senderIndex, signaturePrivateKey: ds.signaturePrivateKey, proposal });
    const remove = await fromDs(1, { proposalType: ProposalType.remove, remove: { removed: carolLeaf } });
    const results = await h.broadcast(undefined, remove);
    expect(results.get("bob")).toMatchObject({ kind: "proposal", sender: { senderType: SenderType.external, senderIndex: 1 } });
    // Signed with the wrong entry's key: refused.
    const wrongKey = await fromDs(0, { proposalType: ProposalType.remove, remove: { removed: carolLeaf } });
    await expect(alice.processMessage(wrongKey)).rejects.toMatchObject({ code: "invalid-signature" });
    // An external sender may not send Update.
    await expect(fromDs(1, { proposalType: ProposalType.selfRemove })).rejects.toMatchObject({ code: "invalid-proposal" });

    const out = await h.commit("alice");
    expect(out.change.removed.map((m) => toHex(m.identity))).toEqual([toHex(utf8("carol"))]);
    expect(h.members.map((m) => m.name)).not.toContain("carol");

    // The DS adds a member from a KeyPackage it holds; a member commits, the Welcome goes out.
    const kp = await h.keyPackage("kate");
    const add = await fromDs(1, { proposalType: ProposalType.add, add: { keyPackage: kp.bundle.keyPackage } });
    await h.broadcast(undefined, add);
    await h.commit("bob", {}, [kp]);
    expect(h.get("kate").group.members()).toHaveLength(10);
  });

  it("takes a joiner's Add of itself (new_member_proposal)", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob"]);
    const alice = h.get("alice").group;
    const kp = await h.keyPackage("carol");
    const proposal = await createNewMemberAddProposal(await getCipherSuite(1), { groupId: alice.groupId, epoch: alice.epoch, keyPackage: kp.bundle });
    expect(await alice.processMessage(proposal)).toMatchObject({ kind: "proposal", sender: { senderType: SenderType.newMemberProposal } });
    await h.get("bob").group.processMessage(proposal);
    await h.commit("bob", {}, [kp]);
    expect(h.members).toHaveLength(3);
  });
});
