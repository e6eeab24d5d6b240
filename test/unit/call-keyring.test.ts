import { describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { CallKeyring, membershipChangeOf } from "../../keying/call/keyring.js";
import { safetyCode } from "../../keying/call/safety-code.js";
import { MlsGroup } from "../../keying/mls/group.js";

async function twoMembers() {
  const alice = await MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("alice/d1")) });
  const bobId = await MlsGroup.generateIdentity(utf8("bob/d1"));
  const joined = await MlsGroup.joinByExternalCommit({ groupInfo: await alice.groupInfo(), ratchetTree: alice.ratchetTree(), identity: bobId });
  const r = await alice.processMessage(joined.commit);
  if (r.kind !== "commit") throw new Error("expected a commit");
  return { alice, bob: joined.group, change: r };
}

describe("call keyring", () => {
  it("derives the SFrame base key from the MLS exporter and the safety code from epoch_authenticator", async () => {
    const group = await MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("alice/d1")) });
    const keyring = new CallKeyring();
    const e = await keyring.advance(group);
    expect(e).toBeDefined();
    expect(e!.epoch).toBe(0n);
    expect(e!.myLeafIndex).toBe(0);
    expect(e!.sframeSuite).toBe(4);
    expect(toHex(e!.baseKey)).toBe(toHex(await group.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16)));
    expect(e!.safetyCode).toBe(safetyCode(group.epochAuthenticator));
    expect(e!.safetyCode).toMatch(/^\d{5}( \d{5}){5}$/);
    expect(e!.members).toEqual([{ leafIndex: 0, identity: "alice/d1" }]);
    expect(keyring.current).toBe(e);
  });

  it("sizes the base key for the SFrame suite (Nk)", async () => {
    const group = await MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("alice/d1")) });
    const e = await new CallKeyring({ sframeSuite: 5 }).advance(group);
    expect(e!.baseKey.length).toBe(32);
    expect(toHex(e!.baseKey)).toBe(toHex(await group.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 32)));
  });

  it("refuses an unknown SFrame suite", () => {
    expect(() => new CallKeyring({ sframeSuite: 9 as never })).toThrow(/SFrame cipher suite/);
  });

  it("moves only forward: the same epoch again yields nothing", async () => {
    const { alice, bob } = await twoMembers();
    const ka = new CallKeyring();
    const kb = new CallKeyring();
    const ea = await ka.advance(alice);
    const eb = await kb.advance(bob);
    expect(ea!.epoch).toBe(1n);
    expect(toHex(ea!.baseKey)).toBe(toHex(eb!.baseKey));
    expect(ea!.safetyCode).toBe(eb!.safetyCode);
    expect(ea!.myLeafIndex).not.toBe(eb!.myLeafIndex);
    expect(await ka.advance(alice)).toBeUndefined();
    const old = await MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("carol/d1")) });
    expect(await ka.advance(old)).toBeUndefined();
    expect(ka.current).toBe(ea);
  });

  it("names the joiner of an external commit and the member a Remove took out", async () => {
    const { alice, bob, change } = await twoMembers();
    expect(membershipChangeOf(change, alice)).toEqual({ joined: [{ leafIndex: 1, identity: "bob/d1" }], left: [] });
    const { commit } = await alice.commit({ remove: [1] });
    const r = await bob.processMessage(commit);
    await alice.mergePendingCommit();
    if (r.kind !== "commit") throw new Error("expected a commit");
    expect(r.removedSelf).toBe(true);
    expect(membershipChangeOf(r, alice)).toEqual({ joined: [], left: [{ leafIndex: 1, identity: "bob/d1" }] });
  });

  it("remembers recent rosters to name late senders", async () => {
    const { alice } = await twoMembers();
    const keyring = new CallKeyring();
    await keyring.advance(alice);
    expect(keyring.memberAt(1n, 1)).toEqual({ leafIndex: 1, identity: "bob/d1" });
    expect(keyring.memberAt(0n, 1)).toBeUndefined();
    expect(keyring.memberAt(1n, 5)).toBeUndefined();
  });
});
