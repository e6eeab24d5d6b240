import { describe, expect, it } from "vitest";
import { bytesEqual, toHex, utf8 } from "../../keying/codec/bytes.js";
import { portableProvider } from "../../keying/crypto/index.js";
import { decode } from "../../keying/codec/reader.js";
import { MlsGroup } from "../../keying/mls/group.js";
import {
  CredentialType,
  ExtensionType,
  ProposalOrRefType,
  ProposalType,
  WireFormat,
  decodeMLSMessage,
  encodeRequiredCapabilities,
  makeExtension,
} from "../../keying/mls/messages.js";
import { Harness } from "./group-harness.js";

const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

function commitOf(bytes: Uint8Array) {
  const m = decode(decodeMLSMessage, bytes);
  if (m.wireFormat !== WireFormat.mlsPublicMessage || m.publicMessage.content.contentType !== 3) throw new Error("not a public commit");
  return m.publicMessage.content.commit;
}

describe("MlsGroup life cycle", () => {
  it("grows to 12 members, covers every proposal type by value and by reference, and all members agree", async () => {
    const h = await Harness.start("alice");
    // Adds without a path (a "partial" commit), then with one.
    const out = await h.add("alice", names("m", 6), { path: false });
    expect(commitOf(out.commit).path).toBeUndefined();
    const out2 = await h.add("m3", names("n", 5));
    expect(commitOf(out2.commit).path).toBeDefined();
    expect(h.members).toHaveLength(12);
    expect(h.get("alice").group.members().map((m) => new TextDecoder().decode(m.identity))).toEqual(["alice", ...names("m", 6), ...names("n", 5)]);

    // Proposals by reference from several members, one commit covers them all.
    const carolKp = await h.keyPackage("carol");
    const add = await h.get("m1").group.proposeAdd(carolKp.message);
    await h.broadcast("m1", add.message);
    const upd = await h.get("n2").group.proposeUpdate();
    const updResults = await h.broadcast("n2", upd.message);
    expect(updResults.get("alice")).toMatchObject({ kind: "proposal", ref: upd.ref });
    const rem = await h.get("m4").group.proposeRemove(h.get("n0").group.leafIndex, { wireFormat: "private" });
    await h.broadcast("m4", rem.message);
    await h.get("alice").group.storeExternalPsk(utf8("psk-1"), new Uint8Array(32).fill(7));
    for (const m of h.members) if (m.name !== "alice") await m.group.storeExternalPsk(utf8("psk-1"), new Uint8Array(32).fill(7));
    const psk = await h.get("m2").group.proposePsk({ external: utf8("psk-1") });
    await h.broadcast("m2", psk.message);
    h.joinPsks = [{ pskId: utf8("psk-1"), psk: new Uint8Array(32).fill(7) }];
    const before = h.get("alice").group.pendingProposals();
    expect(before.map((p) => p.proposal.proposalType)).toEqual([ProposalType.add, ProposalType.update, ProposalType.remove, ProposalType.psk]);

    const commit = await h.commit("alice", {}, [carolKp]);
    const refs = commitOf(commit.commit).proposals;
    expect(refs.every((p) => p.type === ProposalOrRefType.reference)).toBe(true);
    expect(refs).toHaveLength(4);
    expect(commit.change.removed.map((m) => new TextDecoder().decode(m.identity))).toEqual(["n0"]);
    expect(commit.change.added.map((m) => new TextDecoder().decode(m.identity))).toEqual(["carol"]);
    expect(commit.change.updated).toEqual([h.get("n2").group.leafIndex]);
    expect(commit.change.psks).toHaveLength(1);
    expect(h.members).toHaveLength(12);

    // GroupContextExtensions with required_capabilities (by reference), then a commit by value removing two.
    const required = makeExtension(ExtensionType.requiredCapabilities, encodeRequiredCapabilities, { extensionTypes: [], proposalTypes: [], credentialTypes: [CredentialType.basic] });
    const gce = await h.get("carol").group.proposeGroupContextExtensions([required]);
    await h.broadcast("carol", gce.message);
    const gceCommit = await h.commit("m0");
    expect(gceCommit.change.extensionsChanged).toBe(true);
    expect(h.get("alice").group.groupContext.extensions).toHaveLength(1);
    // A resumption PSK of the previous epoch (every current member lived through it), then Removes by value.
    const res = await h.get("m5").group.proposePsk({ resumption: { epoch: h.get("m5").group.epoch - 1n } }, { wireFormat: "private" });
    await h.broadcast("m5", res.message);
    const removal = await h.commit("carol", { remove: [h.get("m1").group.leafIndex, h.get("n4").group.leafIndex] });
    expect(removal.change.psks).toHaveLength(1);
    expect(h.members.map((m) => m.name)).not.toContain("m1");
    expect(h.members).toHaveLength(10);
    // An empty commit (path only) from a member that joined by Welcome.
    const empty = await h.commit("n3");
    expect(commitOf(empty.commit).proposals).toHaveLength(0);

    // ReInit (by reference) closes the group; its successor holds every member, tied by a reinit PSK.
    const reinit = await h.get("m2").group.proposeReInit({ cipherSuite: 3 });
    await h.broadcast("m2", reinit.message);
    expect((await h.commit("alice")).change.reinit?.cipherSuite).toBe(3);
    const others = h.members.filter((m) => m.name !== "alice");
    const fresh = await Promise.all(others.map(async (m) => ({ m, kp: await MlsGroup.generateKeyPackage(await MlsGroup.generateIdentity(utf8(m.name), { cipherSuite: 3 }), { cipherSuite: 3 }) })));
    const successor = await h.get("alice").group.reinitGroup({ keyPackages: fresh.map((f) => f.kp.message), identity: await MlsGroup.generateIdentity(utf8("alice"), { cipherSuite: 3 }) });
    for (const { m, kp } of fresh) {
      const next = await MlsGroup.joinFromWelcome({ welcome: successor.welcome, keyPackage: kp.bundle, resumption: m.group });
      expect(toHex(next.epochAuthenticator)).toBe(toHex(successor.group.epochAuthenticator));
    }
    expect(successor.group.members()).toHaveLength(h.members.length);
  });

  it("runs handshakes as PrivateMessage and sends application data in and out of order across epochs", async () => {
    const h = await Harness.start("alice", { handshakeWireFormat: "private" });
    await h.add("alice", ["bob", "carol", "dave"]);
    const alice = h.get("alice").group;
    const bob = h.get("bob").group;
    const msgs = [];
    for (let i = 0; i < 5; i++) msgs.push(await alice.encryptApplicationMessage(utf8(`e1-${i}`)));
    const epochOne = alice.epoch;
    // A commit arrives before the epoch's messages: they still decrypt from the retained past epoch.
    const commit = await h.commit("carol");
    expect(decode(decodeMLSMessage, commit.commit).wireFormat).toBe(WireFormat.mlsPrivateMessage);
    const late = [];
    for (let i = 0; i < 3; i++) late.push(await alice.encryptApplicationMessage(utf8(`e2-${i}`)));
    for (const i of [2, 0, 4]) expect(await bob.processMessage(msgs[i]!)).toMatchObject({ kind: "application", epoch: epochOne, data: utf8(`e1-${i}`), sender: alice.leafIndex });
    for (const i of [2, 1, 0]) expect(await bob.processMessage(late[i]!)).toMatchObject({ kind: "application", data: utf8(`e2-${i}`) });
    await expect(bob.processMessage(msgs[2]!)).rejects.toMatchObject({ code: "generation-consumed" });
    // Past epochs are bounded (two by default): three commits later epoch 1 is gone.
    await h.commit("dave");
    await h.commit("bob");
    await h.commit("carol");
    await expect(bob.processMessage(msgs[1]!)).rejects.toMatchObject({ code: "wrong-epoch" });
    // Our own message echoed back is ignored.
    const mine = await bob.encryptApplicationMessage(utf8("x"));
    expect(await bob.processMessage(mine)).toEqual({ kind: "ignored", reason: "own-message" });
  });

  it("keeps a commit pending until the DS confirms it and drops it when another commit wins", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob", "carol"]);
    const alice = h.get("alice").group;
    const bob = h.get("bob").group;
    const epoch = alice.epoch;
    const auth = toHex(alice.epochAuthenticator);
    const loser = await alice.commit();
    expect(alice.hasPendingCommit).toBe(true);
    expect(alice.epoch).toBe(epoch);
    expect(toHex(alice.epochAuthenticator)).toBe(auth);
    const winner = await bob.commit();
    await bob.mergePendingCommit();
    const r = await alice.processMessage(winner.commit);
    expect(r).toMatchObject({ kind: "commit", own: false, pendingCommitDiscarded: true });
    expect(alice.hasPendingCommit).toBe(false);
    await h.get("carol").group.processMessage(winner.commit);
    await h.checkAgreement();
    // The stale commit is refused by the others (wrong epoch); Alice rebuilds on the new epoch.
    await expect(bob.processMessage(loser.commit)).rejects.toMatchObject({ code: "wrong-epoch" });
    await expect(alice.mergePendingCommit()).rejects.toMatchObject({ code: "no-pending-commit" });
    await h.commit("alice");
    // clearPendingCommit drops a pending commit explicitly.
    await alice.commit();
    alice.clearPendingCommit();
    expect(alice.hasPendingCommit).toBe(false);
  });

  it("joins by Welcome with the ratchet tree supplied separately, and exports secrets", async () => {
    const h = await Harness.start("alice");
    await h.add("alice", ["bob"]);
    const alice = h.get("alice").group;
    const kp = await h.keyPackage("carol");
    const out = await alice.commit({ add: [kp.message], ratchetTreeInWelcome: false });
    await alice.mergePendingCommit();
    await h.get("bob").group.processMessage(out.commit);
    await expect(MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: kp.bundle })).rejects.toMatchObject({ code: "missing-ratchet-tree" });
    expect(toHex(out.ratchetTree!)).toBe(toHex(alice.ratchetTree()));
    const carol = await MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: kp.bundle, ratchetTree: out.ratchetTree! });
    expect(carol.leafIndex).toBe(2);
    expect(toHex(carol.epochAuthenticator)).toBe(toHex(alice.epochAuthenticator));
    const a = await alice.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16);
    expect(a).toHaveLength(16);
    expect(bytesEqual(a, await carol.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16))).toBe(true);
    expect(bytesEqual(a, await carol.exportSecret("other", new Uint8Array(0), 16))).toBe(false);
  });

  it("commits exactly the proposals named by reference, and recognises its own proposals echoed back", async () => {
    const h = await Harness.start("alice", { handshakeWireFormat: "private" });
    await h.add("alice", ["bob", "carol", "dave"]);
    const alice = h.get("alice").group;
    const mine = await alice.proposeRemove(h.get("dave").group.leafIndex, { authenticatedData: utf8("ad") });
    expect(await alice.processMessage(mine.message)).toMatchObject({ kind: "proposal", own: true, ref: mine.ref, authenticatedData: utf8("ad") });
    await h.broadcast("alice", mine.message);
    const theirs = await h.get("bob").group.proposeUpdate();
    await h.broadcast("bob", theirs.message);
    await expect(alice.commit({ proposalRefs: [new Uint8Array(32)] })).rejects.toMatchObject({ code: "unknown-proposal" });
    const out = await h.commit("carol", { proposalRefs: [theirs.ref] });
    expect(out.change.updated).toEqual([h.get("bob").group.leafIndex]);
    expect(out.change.removed).toHaveLength(0);
  });

  it("works over the portable provider too", async () => {
    const h = await Harness.start("alice", { provider: portableProvider });
    await h.add("alice", ["bob", "carol"]);
    const upd = await h.get("bob").group.proposeUpdate();
    await h.broadcast("bob", upd.message);
    await h.commit("carol", { remove: [h.get("alice").group.leafIndex] });
    const m = await h.get("bob").group.encryptApplicationMessage(utf8("hi"));
    expect(await h.get("carol").group.processMessage(m)).toMatchObject({ kind: "application", data: utf8("hi") });
  });
});
