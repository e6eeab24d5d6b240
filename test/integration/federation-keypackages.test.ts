/**
 * Issue 8: KeyPackages across providers, in the seed's shape. A user of b.example claims `{ user, suites }`
 * for a user of c.example at its own DS, which asks c.example: one bundle per device with the identity key,
 * in a suite every device supports (or `no-common-suite`); single-use KeyPackages are handed out once. The
 * Welcome of a commit adding such a device reaches that device through its own provider, and only from the
 * provider that claimed the KeyPackage.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import type { CipherSuiteId } from "../../keying/crypto/index.js";
import { externalSendersExtension } from "../../keying/mls/external.js";
import { MlsGroup, type SigningIdentity } from "../../keying/mls/group.js";
import type { KeyPackageBundle } from "../../keying/mls/key-package.js";
import { decodeExternalSender } from "../../keying/mls/messages.js";
import { decode } from "../../keying/codec/reader.js";
import { DsConnection } from "../../client/ds-connection.js";
import { DsRequestError, bytesOf, parseSnapshot } from "../../client/protocol.js";
import { until } from "./call-helpers.js";
import { startProviders, stopProviders, type Provider } from "./federation-helpers.js";

interface Device {
  readonly connection: DsConnection;
  readonly identity: SigningIdentity;
  readonly bundles: Map<string, KeyPackageBundle>;
}

describe("KeyPackages across providers", () => {
  let providers: Map<string, Provider>;
  let a: Provider;
  let b: Provider;
  let c: Provider;
  const connections: DsConnection[] = [];
  let laptop: Device;
  let phone: Device;
  let bob: DsConnection;

  async function connect(p: Provider, user: string, device: string): Promise<DsConnection> {
    const connection = await DsConnection.connect({ url: p.ds.url, token: await p.token({ user, device }), transports: ["websocket"] });
    connections.push(connection);
    return connection;
  }

  /** A device of carol@c.example publishing `count` KeyPackages in each suite. */
  async function publish(device: string, suites: CipherSuiteId[], count: number): Promise<Device> {
    const connection = await connect(c, "carol@c.example", device);
    const identity = await MlsGroup.generateIdentity(utf8(`carol@c.example/${device}`));
    const bundles = new Map<string, KeyPackageBundle>();
    const messages: Uint8Array[] = [];
    for (const suite of suites) {
      for (let i = 0; i < count; i++) {
        const { message, bundle } = await MlsGroup.generateKeyPackage(identity, { cipherSuite: suite });
        messages.push(message);
        bundles.set(toHex(message), bundle);
      }
    }
    await connection.request("kp:upload", { keyPackages: messages });
    return { connection, identity, bundles };
  }

  beforeAll(async () => {
    providers = await startProviders([{ domain: "a.example" }, { domain: "b.example" }, { domain: "c.example" }]);
    a = providers.get("a.example")!;
    b = providers.get("b.example")!;
    c = providers.get("c.example")!;
    laptop = await publish("laptop", [1, 3], 3);
    phone = await publish("phone", [1], 2);
    bob = await connect(b, "bob@b.example", "d1");
  });
  afterAll(async () => {
    for (const conn of connections) conn.close();
    await stopProviders(providers);
  });

  const claim = (suites: number[], user = "carol@c.example") => bob.request("kp:claim", { user, suites });

  it("returns one bundle per device with its identity key, in a suite every device supports", async () => {
    // Suite 3 is the preference, but the phone has none: suite 1 is the one both devices hold.
    const r = await claim([3, 1]);
    expect(r.user).toBe("carol@c.example");
    expect(r.suite).toBe(1);
    const devices = r.devices as { device: string; keyPackage: unknown; identityKey: string; lastResort: boolean }[];
    expect(devices.map((d) => d.device).sort()).toEqual(["laptop", "phone"]);
    for (const d of devices) {
      const owner = d.device === "laptop" ? laptop : phone;
      expect(d.identityKey).toBe(toHex(owner.identity.signaturePublicKey));
      expect(owner.bundles.has(toHex(bytesOf(d.keyPackage, "kp")))).toBe(true);
      expect(d.lastResort).toBe(false);
    }
    expect(r.exhausted).toEqual([]);
  });

  it("hands each single-use KeyPackage out once, then says which devices are exhausted", async () => {
    const handedOut: string[] = [];
    const second = await claim([1]);
    const third = await claim([1]);
    for (const r of [second, third]) for (const d of r.devices as { keyPackage: unknown }[]) handedOut.push(toHex(bytesOf(d.keyPackage, "kp")));
    // Suite 1: the phone had 2 KeyPackages, the laptop 3; this is the second and third claim.
    expect((second.devices as unknown[]).length).toBe(2);
    expect((third.devices as { device: string }[]).map((d) => d.device)).toEqual(["laptop"]);
    expect(third.exhausted).toEqual(["phone"]);
    expect(new Set(handedOut).size).toBe(handedOut.length);
  });

  it("refuses an impossible suite request with no-common-suite, and an unknown user", async () => {
    const e = await claim([2]).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(DsRequestError);
    expect((e as DsRequestError).code).toBe("no-common-suite");
    expect((e as DsRequestError).extra.offered).toEqual([3]);
    // Only the laptop has material left, in suite 3 only.
    expect(((await claim([1]).catch((err: unknown) => err)) as DsRequestError).code).toBe("no-common-suite");
    const r = await claim([1, 3]);
    expect(r.suite).toBe(3);
    expect((r.devices as { device: string }[]).map((d) => d.device)).toEqual(["laptop"]);
    const unknown = await claim([1], "nobody@c.example").catch((err: unknown) => err);
    expect((unknown as DsRequestError).code).toBe("unknown-user");
  });

  it("routes the Welcome of a cross-provider Add to the added device, through its provider only", async () => {
    // carol's laptop publishes again, bob claims it, bob's group (hosted by a.example) adds it.
    const fresh = await MlsGroup.generateKeyPackage(laptop.identity);
    laptop.bundles.set(toHex(fresh.message), fresh.bundle);
    await laptop.connection.request("kp:upload", { keyPackages: [fresh.message] });
    const claimed = await claim([1]);
    const kp = bytesOf((claimed.devices as { device: string; keyPackage: unknown }[]).find((d) => d.device === "laptop")!.keyPackage, "kp");

    const room = "welcome@a.example";
    expect((await bob.request("room:join", { room })).group).toBeNull();
    const sender = decode(decodeExternalSender, bytesOf((await bob.request("ds:external-sender", { suite: 1, room })).externalSender, "sender"));
    const bobIdentity = await MlsGroup.generateIdentity(utf8("bob@b.example/d1"));
    const group = await MlsGroup.create({ identity: bobIdentity, extensions: [externalSendersExtension([sender])] });
    const snapshot = parseSnapshot((await bob.request("group:create", { room, groupInfo: await group.groupInfo(), tree: group.ratchetTree() })).group);
    expect(await b.store.getGroup(snapshot.groupId)).toBeUndefined();
    expect((await a.store.getGroup(snapshot.groupId))!.room).toBe(room);
    await bob.subscribe(snapshot.groupId, snapshot.seq, { entry: () => undefined, closed: () => undefined });

    const welcomes: { groupId: string; seq: number; welcome: Uint8Array }[] = [];
    laptop.connection.socket.on("group:welcome", (w: { groupId: string; seq: number; welcome: unknown }) => welcomes.push({ ...w, welcome: bytesOf(w.welcome, "welcome") }));
    const phoneWelcomes: unknown[] = [];
    phone.connection.socket.on("group:welcome", (w: unknown) => phoneWelcomes.push(w));

    const { commit, welcome, groupInfo } = await group.commit({ add: [kp] });
    const sent = await bob.request("group:send", { groupId: snapshot.groupId, message: commit, groupInfo, welcome });
    await group.mergePendingCommit();
    await until(() => welcomes.length === 1, () => "the Welcome reaching carol's laptop");
    expect(welcomes[0]!.groupId).toBe(snapshot.groupId);
    expect(welcomes[0]!.seq).toBe(sent.seq);
    const joined = await MlsGroup.joinFromWelcome({ welcome: welcomes[0]!.welcome, keyPackage: laptop.bundles.get(toHex(kp))! });
    expect(joined.epoch).toBe(1n);
    expect(toHex(joined.epochAuthenticator)).toBe(toHex(group.epochAuthenticator));
    expect(phoneWelcomes).toEqual([]);

    // carol's laptop then follows the call at its own DS, which learned the hub from the Welcome.
    const entries: number[] = [];
    await laptop.connection.subscribe(snapshot.groupId, sent.seq as number, { entry: (e) => entries.push(e.seq), closed: () => undefined });
    await bob.request("group:send", { groupId: snapshot.groupId, message: await group.encryptApplicationMessage(utf8("hi carol")) });
    await until(() => entries.length === 1, () => "the chat reaching carol's laptop through c.example");

    // The same Welcome sent by a provider that did not claim the KeyPackage reaches nobody.
    const reply = await a.federation.link("c.example").request("fed:welcome", { groupId: snapshot.groupId, hub: "a.example", seq: 1, welcome: welcomes[0]!.welcome }, { once: true });
    expect(reply.delivered).toBe(0);
    expect(welcomes).toHaveLength(1);
  });
});
