import { describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { CredentialType, ProposalType, type LeafNode } from "../../keying/mls/messages.js";
import { leafToNode } from "../../keying/mls/tree-math.js";
import { Harness, stateOf } from "./group-harness.js";

describe("group state persistence", () => {
  it("resumes from bytes mid-epoch: cached proposals, own Update keys, out-of-order keys, past epochs and a pending commit", async () => {
    const h = await Harness.start("alice", { handshakeWireFormat: "private" });
    await h.add("alice", ["bob", "carol", "dave"]);
    const alice = h.get("alice");
    const bob = h.get("bob");
    const early = [];
    for (let i = 0; i < 4; i++) early.push(await alice.group.encryptApplicationMessage(utf8(`m${i}`)));
    expect(await bob.group.processMessage(early[3]!)).toMatchObject({ kind: "application" });
    await h.commit("carol");
    // Bob's own Update is pending and Dave proposes a Remove; then Bob is persisted and resumed.
    await h.broadcast("bob", (await bob.group.proposeUpdate()).message);
    await h.broadcast("dave", (await h.get("dave").group.proposeRemove(h.get("carol").group.leafIndex)).message);
    const bytes = bob.group.encode();
    bob.group = await MlsGroup.decode(bytes);
    expect(toHex(bob.group.encode())).toBe(toHex(bytes));
    expect(bob.group.pendingProposals().map((p) => p.proposal.proposalType)).toEqual([ProposalType.update, ProposalType.remove]);
    // The resumed Bob reads past-epoch messages skipped before, and installs its Update's key when committed.
    expect(await bob.group.processMessage(early[1]!)).toMatchObject({ kind: "application", data: utf8("m1") });
    await expect(bob.group.processMessage(early[3]!)).rejects.toMatchObject({ code: "generation-consumed" });
    await h.commit("alice");
    expect(h.members.map((m) => m.name)).toEqual(["alice", "bob", "dave"]);

    // A pending commit survives persistence and merges after resume.
    const out = await alice.group.commit();
    alice.group = await MlsGroup.decode(alice.group.encode());
    expect(alice.group.hasPendingCommit).toBe(true);
    expect(await alice.group.processMessage(out.commit)).toMatchObject({ kind: "commit", own: true });
    await h.broadcast("alice", out.commit);
    await h.checkAgreement();
    expect(alice.group.handshakeWireFormat).toBe("private");
    const msg = await bob.group.encryptApplicationMessage(utf8("after"));
    expect(await alice.group.processMessage(msg)).toMatchObject({ kind: "application", data: utf8("after") });
  });

  it("refuses corrupted state bytes with a typed error", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob"]);
    const bytes = h.get("bob").group.encode();
    await expect(MlsGroup.decode(bytes.subarray(0, bytes.length - 3))).rejects.toMatchObject({ name: "MlsDecodeError" });
    // The stored public key of Bob's leaf key pair no longer matches the tree.
    const bob = stateOf(h.get("bob").group);
    const priv = bob.privateState.privateKey(bob.tree, leafToNode(bob.privateState.leafIndex))!;
    const at = toHex(bytes).indexOf(toHex(priv)) / 2;
    const corrupted = bytes.slice();
    corrupted[at + priv.length + 2]! ^= 1;
    await expect(MlsGroup.decode(corrupted)).rejects.toMatchObject({ code: "invalid-private-state" });
  });
});

describe("ReInit and branch", () => {
  it("reinitializes a group into a new one with another cipher suite, tied by a reinit PSK", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob", "carol"]);
    const alice = h.get("alice").group;
    const r = await h.get("bob").group.proposeReInit({ cipherSuite: 3 });
    await h.broadcast("bob", r.message);
    const out = await h.commit("carol");
    expect(out.change.reinit?.cipherSuite).toBe(3);
    for (const m of h.members) expect(m.group.reinit?.cipherSuite).toBe(3);
    await expect(alice.encryptApplicationMessage(utf8("x"))).rejects.toMatchObject({ code: "group-reinitialized" });
    await expect(alice.commit()).rejects.toMatchObject({ code: "group-reinitialized" });

    // Alice creates the successor with new suite-3 KeyPackages of the others.
    const newIds = { bob: await MlsGroup.generateIdentity(utf8("bob"), { cipherSuite: 3 }), carol: await MlsGroup.generateIdentity(utf8("carol"), { cipherSuite: 3 }) };
    const kps = { bob: await MlsGroup.generateKeyPackage(newIds.bob, { cipherSuite: 3 }), carol: await MlsGroup.generateKeyPackage(newIds.carol, { cipherSuite: 3 }) };
    // Members are matched by client (policy.clientId; the default compares keys or credential bytes).
    const policy = { clientId: (leaf: LeafNode) => (leaf.credential.credentialType === CredentialType.basic ? toHex(leaf.credential.identity) : "") };
    const { group: next, welcome } = await alice.reinitGroup({ keyPackages: [kps.bob.message, kps.carol.message], identity: await MlsGroup.generateIdentity(utf8("alice"), { cipherSuite: 3 }), policy });
    expect(next.cipherSuite).toBe(3);
    expect(next.epoch).toBe(1n);
    expect(toHex(next.groupId)).toBe(toHex(alice.reinit!.groupId));
    const bob = await MlsGroup.joinFromWelcome({ welcome, keyPackage: kps.bob.bundle, resumption: h.get("bob").group, policy });
    expect(toHex(bob.epochAuthenticator)).toBe(toHex(next.epochAuthenticator));
    // Without the old group (its resumption PSK), the Welcome cannot be used.
    await expect(MlsGroup.joinFromWelcome({ welcome, keyPackage: kps.carol.bundle, policy })).rejects.toMatchObject({ code: "missing-psk" });
    // Under the default policy (same client = same key or credential bytes) the members match too.
    const carol = await MlsGroup.joinFromWelcome({ welcome, keyPackage: kps.carol.bundle, resumption: h.get("carol").group });
    expect(carol.members()).toHaveLength(3);
  });

  it("branches a subgroup with a branch PSK; a Welcome naming non-members of the old group is refused", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob", "carol", "dave"]);
    const alice = h.get("alice").group;
    const bobKp = await MlsGroup.generateKeyPackage(h.get("bob").identity);
    const daveKp = await MlsGroup.generateKeyPackage(h.get("dave").identity);
    const { group: sub, welcome } = await alice.branch({ keyPackages: [bobKp.message, daveKp.message] });
    expect(sub.epoch).toBe(1n);
    expect(sub.cipherSuite).toBe(alice.cipherSuite);
    const bob = await MlsGroup.joinFromWelcome({ welcome, keyPackage: bobKp.bundle, resumption: h.get("bob").group });
    expect(toHex(bob.epochAuthenticator)).toBe(toHex(sub.epochAuthenticator));
    expect(bob.members().map((m) => new TextDecoder().decode(m.identity))).toEqual(["alice", "bob", "dave"]);
    // The original group carries on.
    await h.commit("carol");

    const stranger = await MlsGroup.generateIdentity(utf8("stranger"));
    const strangerKp = await MlsGroup.generateKeyPackage(stranger);
    const bad = await alice.branch({ keyPackages: [strangerKp.message] });
    await expect(MlsGroup.joinFromWelcome({ welcome: bad.welcome, keyPackage: strangerKp.bundle, resumption: h.get("carol").group })).rejects.toMatchObject({ code: "invalid-resumption" });
  });
});
