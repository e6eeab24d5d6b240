/**
 * Issue 8: DS-to-DS links are authenticated by provider keys in both directions, against each DS's list of
 * trusted peers, and a linked provider speaks only for its own users. Each refusal is a typed error.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { utf8 } from "../../keying/codec/bytes.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { DsRequestError } from "../../client/protocol.js";
import { parseSnapshot } from "../../client/protocol.js";
import { FederationError, generateProviderKey, type ProviderKey } from "../../sfu-signaling/federation/index.js";
import { importPublicKey } from "../../sfu-signaling/federation/identity.js";
import { PeerLink } from "../../sfu-signaling/federation/link.js";
import { homePeer, startProviders, stopProviders, type Provider } from "./federation-helpers.js";

describe("federation links", () => {
  let providers: Map<string, Provider>;
  let a: Provider;
  let b: Provider;
  let x: Provider;
  let c: Provider;
  const links: PeerLink[] = [];

  beforeAll(async () => {
    providers = await startProviders([
      { domain: "a.example", trusts: ["b.example", "c.example"] },
      { domain: "b.example", trusts: ["a.example"] },
      // x trusts a, but a does not know x.
      { domain: "x.example", trusts: ["a.example"] },
      // c trusts a, but holds a wrong key for it.
      { domain: "c.example", trusts: ["a.example"], wrongKeys: ["a.example"] },
    ]);
    a = providers.get("a.example")!;
    b = providers.get("b.example")!;
    x = providers.get("x.example")!;
    c = providers.get("c.example")!;
  });
  afterAll(async () => {
    for (const l of links) l.close();
    await stopProviders(providers);
  });

  /** A raw link from `domain` (holding `key`) to a.example. */
  function linkToA(domain: string, key: ProviderKey, peerDomain = "a.example"): PeerLink {
    const link = new PeerLink({
      domain,
      key: key.privateKey,
      peer: { domain: peerDomain, url: a.linkUrl, publicKey: a.key.publicKey },
      peerKey: importPublicKey(a.key.publicKey),
      onReady: () => undefined,
      onPush: () => undefined,
      log: () => undefined,
      requestTimeoutMs: 10_000,
    });
    links.push(link);
    return link;
  }

  async function refusal(p: Promise<unknown>): Promise<string> {
    const e = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    if (!(e instanceof FederationError)) throw new Error(`expected a FederationError, got ${String(e)}`);
    return e.code;
  }

  it("links two trusted providers", async () => {
    await b.federation.link("a.example").whenReady();
    expect(b.federation.link("a.example").ready).toBe(true);
  });

  it("refuses a provider that is not in the trusted list", async () => {
    expect(await refusal(x.federation.link("a.example").whenReady())).toBe("untrusted-peer");
    // Its users are told why, in the DS's terms.
    const user = await homePeer(x, "xena@x.example", "room@a.example");
    const e = await user.session.join().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DsRequestError);
    expect((e as DsRequestError).extra.federation).toBe("untrusted-peer");
    user.connection.close();
  });

  it("refuses a DS whose key does not match the configured one, in both directions", async () => {
    // c.example holds a wrong key for a.example: a.example cannot prove itself to c.
    expect(await refusal(c.federation.link("a.example").whenReady())).toBe("peer-authentication-failed");
    // Someone claiming to be b.example without b's key cannot prove itself to a.
    expect(await refusal(linkToA("b.example", generateProviderKey()).whenReady())).toBe("bad-signature");
    // A DS asking for another provider than the one it reached is misconfigured.
    expect(await refusal(linkToA("b.example", b.key, "z.example").whenReady())).toBe("wrong-provider");
  });

  it("refuses a provider acting or claiming for a user of another provider", async () => {
    const asB = linkToA("b.example", b.key);
    await asB.whenReady();
    const act = asB.request("fed:act", { user: "carol@c.example", device: "d1", event: "room:join", payload: { room: "r@a.example" } }, { once: true });
    expect(await refusal(act)).toBe("forbidden-user");
    const claim = asB.request("fed:claim", { requester: "carol@c.example", user: "alice@a.example", suites: [1] }, { once: true });
    expect(await refusal(claim)).toBe("forbidden-user");
    // Acting for its own user works.
    const ok = await asB.request("fed:act", { user: "bob@b.example", device: "d1", event: "room:join", payload: { room: "r@a.example" } }, { once: true });
    expect(ok.group).toBeNull();
  });

  it("refuses a follower's commit whose credential names a user of another provider", async () => {
    const alice = await homePeer(a, "alice@a.example", "forge@a.example");
    await alice.session.join();
    const bob = await homePeer(b, "bob@b.example", "forge@a.example");
    const snapshot = parseSnapshot((await bob.connection.request("room:join", { room: "forge@a.example" })).group);
    const identity = await MlsGroup.generateIdentity(utf8("carol@c.example/d1"));
    const { commit, groupInfo } = await MlsGroup.joinByExternalCommit({ groupInfo: snapshot.groupInfo, ratchetTree: snapshot.tree, identity });
    await bob.connection.subscribe(snapshot.groupId, snapshot.seq, { entry: () => undefined, closed: () => undefined });
    const e = await bob.connection.request("group:send", { groupId: snapshot.groupId, message: commit, groupInfo }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DsRequestError);
    expect((e as DsRequestError).code).toBe("wrong-identity");
    expect((await a.store.getGroup(snapshot.groupId))!.epoch).toBe(0);
    alice.connection.close();
    bob.connection.close();
  });
});
