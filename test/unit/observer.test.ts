import { beforeEach, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { decode } from "../../keying/codec/reader.js";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite } from "../../keying/crypto/index.js";
import { createExternalProposal, externalSenderOf, externalSendersExtension } from "../../keying/mls/external.js";
import { MlsGroup, type SigningIdentity } from "../../keying/mls/group.js";
import { ProposalType, WireFormat, decodeMLSMessage, encodeGroupContext, encodeMLSMessage } from "../../keying/mls/messages.js";
import { PublicObserver } from "../../keying/mls/observer.js";
import { Harness } from "./group-harness.js";

let h: Harness;
let ds: SigningIdentity;
let observer: PublicObserver;

/** Commit by `committer`, vetted by the observer with its GroupInfo, then delivered to everyone. */
async function vettedCommit(committer: string, request: Parameters<MlsGroup["commit"]>[0] = {}, joiners: Awaited<ReturnType<Harness["keyPackage"]>>[] = []) {
  const c = h.get(committer).group;
  const out = await c.commit(request);
  expect(await observer.processMessage(out.commit, { groupInfo: out.groupInfo! })).toMatchObject({ kind: "commit", groupInfoAccepted: true });
  await c.processMessage(out.commit);
  const results = await h.broadcast(committer, out.commit);
  for (const [name, r] of results) if (r.kind === "commit" && r.removedSelf) h.members.splice(h.members.findIndex((m) => m.name === name), 1);
  for (const j of joiners) h.members.push({ name: j.name, identity: j.identity, group: await MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: j.bundle }) });
  await h.checkAgreement();
  checkObserver();
  return out;
}

function checkObserver(): void {
  const g = h.members[0]!.group;
  expect(observer.epoch).toBe(g.epoch);
  expect(toHex(encode(encodeGroupContext, observer.groupContext))).toBe(toHex(encode(encodeGroupContext, g.groupContext)));
  expect(toHex(observer.ratchetTree())).toBe(toHex(g.ratchetTree()));
  expect(observer.members().map((m) => toHex(m.signatureKey))).toEqual(g.members().map((m) => toHex(m.signatureKey)));
}

async function vettedProposal(from: string, message: Uint8Array) {
  expect((await observer.processMessage(message)).kind).toBe("proposal");
  await h.broadcast(from, message);
}

beforeEach(async () => {
  ds = await MlsGroup.generateIdentity(utf8("ds"));
  h = await Harness.start("alice", { extensions: [externalSendersExtension([externalSenderOf(ds)])] });
  observer = await PublicObserver.fromGroupInfo(await h.get("alice").group.groupInfo({ ratchetTree: true }));
});

describe("PublicObserver", () => {
  it("follows a group through adds, proposals of every kind, external senders and external joins", async () => {
    const kps = await Promise.all(["bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy", "kate"].map((n) => h.keyPackage(n)));
    await vettedCommit("alice", { add: kps.map((k) => k.message) }, kps);
    expect(observer.members()).toHaveLength(11);

    await vettedProposal("bob", (await h.get("bob").group.proposeUpdate()).message);
    await vettedProposal("carol", (await h.get("carol").group.proposeRemove(h.get("dave").group.leafIndex)).message);
    const suite = await getCipherSuite(1);
    const dsRemove = await createExternalProposal(suite, {
      groupId: observer.groupId,
      epoch: observer.epoch,
      senderIndex: 0,
      signaturePrivateKey: ds.signaturePrivateKey,
      proposal: { proposalType: ProposalType.remove, remove: { removed: h.get("erin").group.leafIndex } },
    });
    await vettedProposal("none", dsRemove);
    expect(observer.pendingProposals()).toHaveLength(3);
    const out = await vettedCommit("frank");
    expect(out.change.removed).toHaveLength(2);
    expect(observer.pendingProposals()).toHaveLength(0);

    // An external joiner uses what the DS serves: the committer's GroupInfo and the observer's tree.
    const served = observer.groupInfo()!;
    expect(toHex(served)).toBe(toHex(out.groupInfo!));
    const identity = await h.identity("zed");
    const joined = await MlsGroup.joinByExternalCommit({ groupInfo: served, ratchetTree: observer.ratchetTree(), identity });
    expect(await observer.processMessage(joined.commit, { groupInfo: joined.groupInfo! })).toMatchObject({ kind: "commit", external: true });
    await h.broadcast(undefined, joined.commit);
    h.members.push({ name: "zed", identity, group: joined.group });
    await h.checkAgreement();
    checkObserver();

    // Application PrivateMessages pass unread; a GroupInfo refreshed by any member is accepted.
    const app = await h.get("zed").group.encryptApplicationMessage(utf8("hi"));
    expect(await observer.processMessage(app)).toEqual({ kind: "application", epoch: observer.epoch });
    await observer.acceptGroupInfo(await h.get("gina").group.groupInfo());
    // The state survives encode/decode.
    const again = await PublicObserver.decode(observer.encode());
    expect(toHex(again.encode())).toBe(toHex(observer.encode()));
    observer = again;
    await vettedCommit("zed", { remove: [h.get("alice").group.leafIndex] });
  });

  it("refuses what members would refuse, and what it cannot follow, leaving its state unchanged", async () => {
    const bob = await h.keyPackage("bob");
    await vettedCommit("alice", { add: [bob.message] }, [bob]);
    const expectRefused = async (bytes: Uint8Array, code: string, groupInfo?: Uint8Array) => {
      const before = toHex(observer.encode());
      await expect(observer.processMessage(bytes, groupInfo ? { groupInfo } : {})).rejects.toMatchObject({ code });
      expect(toHex(observer.encode())).toBe(before);
    };
    const alice = h.get("alice").group;
    const good = await alice.commit();
    alice.clearPendingCommit();
    const raw = decode(decodeMLSMessage, good.commit);
    if (raw.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("expected PublicMessage");
    const pm = raw.publicMessage;
    const sig = pm.auth.signature.map((b, i) => (i === 0 ? b ^ 1 : b));
    await expectRefused(encode(encodeMLSMessage, { ...raw, publicMessage: { ...pm, auth: { ...pm.auth, signature: sig } } }), "invalid-signature");
    await expectRefused(encode(encodeMLSMessage, { ...raw, publicMessage: { ...pm, content: { ...pm.content, epoch: 7n } } }), "wrong-epoch");
    await expectRefused(encode(encodeMLSMessage, { ...raw, publicMessage: { ...pm, content: { ...pm.content, sender: { senderType: 1, leafIndex: 5 } } } }), "unknown-sender");
    // The commit is fine, but the GroupInfo sent with it belongs to the old epoch: refused as a whole.
    await expectRefused(good.commit, "invalid-group-info", await alice.groupInfo());
    // A handshake PrivateMessage cannot be followed.
    const priv = await alice.commit({ wireFormat: "private" });
    alice.clearPendingCommit();
    await expectRefused(priv.commit, "unreadable");
    // An invalid proposal (Remove of a blank leaf) from a member.
    await expect(alice.proposeRemove(3)).rejects.toMatchObject({ code: "invalid-proposal" });
    // Finally the good commit with its own GroupInfo is accepted.
    expect(await observer.processMessage(good.commit, { groupInfo: good.groupInfo! })).toMatchObject({ kind: "commit" });
  });
});
