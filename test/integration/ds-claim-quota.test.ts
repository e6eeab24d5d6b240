/**
 * The KeyPackage claim quota: a claimer may take another user's single-use KeyPackages only a few times per
 * window, so it cannot drain them (which would stop anyone from adding that user). Refusals are typed and
 * take nothing; a user's own devices, other claimers, last-resort KeyPackages and a normal add are
 * unaffected; across providers the quota counts per remote user. Real DSes, SQLite, Socket.IO on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { DsConnection } from "../../client/ds-connection.js";
import { DsRequestError } from "../../client/protocol.js";
import type { GroupSnapshot } from "../../sfu-signaling/protocol.js";
import { bytesOf, errorCode, ok, request, startTestDs, type Reply, type TestDs } from "./ds-helpers.js";
import { Participant } from "./ds-participant.js";
import { startProviders, stopProviders, type Provider } from "./federation-helpers.js";

const QUOTA = 3;

type Claim = { devices: { device: string; keyPackage: unknown; lastResort: boolean }[]; exhausted: string[] };
type Inventory = { inventory: { suite: number; available: number; lastResort: boolean }[] };

async function keyPackages(identity: string, count: number, lastResort = false): Promise<Uint8Array[]> {
  const id = await MlsGroup.generateIdentity(utf8(identity));
  return Promise.all(Array.from({ length: count }, async () => (await MlsGroup.generateKeyPackage(id, { lastResort })).message));
}

describe("KeyPackage claim quota", () => {
  let t: TestDs;
  beforeAll(async () => {
    t = await startTestDs({ keyPackageClaimQuota: { claims: QUOTA, windowMs: 600_000 } });
  });
  afterAll(async () => t.close());

  it("refuses a claimer past its quota for a user, taking nothing, while others and the user's own devices still claim", async () => {
    const victim = await t.client({ user: "victim", device: "phone" });
    ok(await request(victim, "kp:upload", { keyPackages: [...(await keyPackages("victim/phone", 9)), ...(await keyPackages("victim/phone", 1, true))] }));
    const mallory = await t.client({ user: "mallory" });
    const claim = (s: typeof mallory, user = "victim") => request<Claim>(s, "kp:claim", { user, suites: [1] });

    for (let i = 0; i < QUOTA; i++) expect(ok(await claim(mallory)).devices).toMatchObject([{ device: "phone", lastResort: false }]);
    const refused = await claim(mallory);
    expect(errorCode(refused as Reply<unknown>)).toBe("claim-quota-exceeded");
    const retryAfterMs = refused.ok ? undefined : refused.error.retryAfterMs;
    expect(retryAfterMs).toBeGreaterThan(0);
    expect(retryAfterMs).toBeLessThanOrEqual(600_000);
    // Another connection (device) of the same user shares the quota.
    const mallory2 = await t.client({ user: "mallory", device: "d2" });
    expect(errorCode((await claim(mallory2)) as Reply<unknown>)).toBe("claim-quota-exceeded");
    expect(ok(await request<Inventory>(victim, "kp:status", {})).inventory).toEqual([{ suite: 1, available: 9 - QUOTA, lastResort: true }]);

    // Someone else still gets one; the user's own other device is exempt.
    const alice = await t.client({ user: "alice" });
    expect(ok(await claim(alice)).devices).toMatchObject([{ device: "phone", lastResort: false }]);
    const laptop = await t.client({ user: "victim", device: "laptop" });
    for (let i = 0; i < QUOTA + 1; i++) expect(ok(await claim(laptop)).devices).toMatchObject([{ device: "phone", lastResort: false }]);
    expect(ok(await request<Inventory>(victim, "kp:status", {})).inventory).toEqual([{ suite: 1, available: 9 - QUOTA - 1 - (QUOTA + 1), lastResort: true }]);
    // The quota is per target user: mallory may still claim someone else.
    ok(await request(alice, "kp:upload", { keyPackages: await keyPackages("alice/d1", 1) }));
    expect(ok(await claim(mallory, "alice")).devices).toHaveLength(1);
    for (const s of [victim, mallory, mallory2, alice, laptop]) s.disconnect();
  });

  it("counts concurrent claims: exactly the quota succeeds", async () => {
    const target = await t.client({ user: "popular" });
    ok(await request(target, "kp:upload", { keyPackages: await keyPackages("popular/d1", 10) }));
    const eager = await t.client({ user: "eager" });
    const replies = await Promise.all(Array.from({ length: 8 }, () => request<Claim>(eager, "kp:claim", { user: "popular", suites: [1] })));
    expect(replies.filter((r) => r.ok)).toHaveLength(QUOTA);
    expect(replies.filter((r) => !r.ok).map((r) => errorCode(r as Reply<unknown>))).toEqual(Array(8 - QUOTA).fill("claim-quota-exceeded"));
    expect(ok(await request<Inventory>(target, "kp:status", {})).inventory).toEqual([{ suite: 1, available: 10 - QUOTA, lastResort: false }]);
    target.disconnect();
    eager.disconnect();
  });

  it("keeps handing out last-resort KeyPackages, which do not use up the quota", async () => {
    const target = await t.client({ user: "sparse" });
    ok(await request(target, "kp:upload", { keyPackages: [...(await keyPackages("sparse/d1", 1)), ...(await keyPackages("sparse/d1", 1, true))] }));
    const claimer = await t.client({ user: "repeat" });
    const kinds: boolean[] = [];
    for (let i = 0; i < QUOTA + 3; i++) kinds.push(...ok(await request<Claim>(claimer, "kp:claim", { user: "sparse", suites: [1] })).devices.map((d) => d.lastResort));
    expect(kinds).toEqual([false, ...Array(QUOTA + 2).fill(true)]);
    target.disconnect();
    claimer.disconnect();
  });

  it("leaves a normal add unaffected: claim, Add commit, Welcome", async () => {
    const host = await Participant.connect(t.ds.url, await t.token({ user: "host" }), "host/d1");
    await host.join("quota-room");
    const guest = await Participant.connect(t.ds.url, await t.token({ user: "guest" }), "guest/d1");
    const { message, bundle } = await MlsGroup.generateKeyPackage(guest.identity);
    ok(await request(guest.socket, "kp:upload", { keyPackages: [message] }));
    const welcomed = new Promise<{ welcome: unknown }>((resolve) => guest.socket.once("group:welcome", resolve));
    const claimed = ok(await request<Claim>(host.socket, "kp:claim", { user: "guest", suites: [1] }));
    const reply = await host.inQueue(async () => {
      const out = await host.group!.commit({ add: claimed.devices.map((d) => bytesOf(d.keyPackage)) });
      const r = await request<{ seq: number }>(host.socket, "group:send", { groupId: host.groupId, message: out.commit, groupInfo: out.groupInfo, welcome: out.welcome });
      if (!r.ok) host.group!.clearPendingCommit();
      return r;
    });
    ok(reply);
    await host.waitForEpoch(1n);
    const snap = ok(await request<{ group: GroupSnapshot }>(guest.socket, "room:join", { room: "quota-room" })).group;
    const group = await MlsGroup.joinFromWelcome({ welcome: bytesOf((await welcomed).welcome), keyPackage: bundle, ratchetTree: bytesOf(snap.tree) });
    expect(toHex(group.epochAuthenticator)).toBe(await host.authenticator());
    host.close();
    guest.close();
  });
});

describe("KeyPackage claim quota across providers", () => {
  let providers: Map<string, Provider>;
  const connections: DsConnection[] = [];
  const connect = async (p: Provider, user: string, device = "d1") => {
    const c = await DsConnection.connect({ url: p.ds.url, token: await p.token({ user, device }), transports: ["websocket"] });
    connections.push(c);
    return c;
  };
  beforeAll(async () => {
    providers = await startProviders([{ domain: "b.example" }, { domain: "c.example" }], { ds: { keyPackageClaimQuota: { claims: 2, windowMs: 600_000 } } });
  });
  afterAll(async () => {
    for (const c of connections) c.close();
    await stopProviders(providers);
  });

  it("counts each remote user's claims at the target's DS and refuses past the quota with the same typed error", async () => {
    const b = providers.get("b.example")!;
    const c = providers.get("c.example")!;
    const carol = await connect(c, "carol@c.example");
    await carol.request("kp:upload", { keyPackages: await keyPackages("carol@c.example/d1", 6) });
    const bob = await connect(b, "bob@b.example");
    const dan = await connect(b, "dan@b.example");
    const claim = (who: DsConnection) => who.request("kp:claim", { user: "carol@c.example", suites: [1] });
    await claim(bob);
    await claim(bob);
    const refused = await claim(bob).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DsRequestError);
    expect((refused as DsRequestError).code).toBe("claim-quota-exceeded");
    expect((refused as DsRequestError).extra.retryAfterMs).toBeGreaterThan(0);
    // Another user of the same provider has a quota of its own.
    expect((await claim(dan)).devices).toHaveLength(1);
    expect(((await carol.request("kp:status", {})).inventory as { available: number }[])[0]!.available).toBe(3);
  });
});
