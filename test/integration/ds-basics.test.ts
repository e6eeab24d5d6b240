/**
 * The DS without groups: authentication, development tokens, the KeyPackage directory, payload validation,
 * rate limiting and metrics, over real Socket.IO connections on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite, nativeProvider } from "../../keying/crypto/index.js";
import { generateKeyPackage, generateSigningIdentity } from "../../keying/mls/key-package.js";
import { ProtocolVersion, WireFormat, decodeMLSMessage, encodeMLSMessage, type KeyPackage } from "../../keying/mls/messages.js";
import { decode } from "../../keying/codec/reader.js";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { TokenAuthority } from "../../sfu-signaling/auth.js";
import { bytesOf, connectSocket, errorCode, ok, request, startTestDs, type TestDs } from "./ds-helpers.js";

async function keyPackage(identity: string, suiteId: 1 | 3 = 1, lastResort = false): Promise<Uint8Array> {
  const suite = await getCipherSuite(suiteId, nativeProvider);
  const id = await generateSigningIdentity(suite, utf8(identity));
  const { keyPackage } = await generateKeyPackage(suite, id, { lastResort });
  return wrap(keyPackage);
}

function wrap(keyPackage: KeyPackage): Uint8Array {
  return encode(encodeMLSMessage, { version: ProtocolVersion.mls10, wireFormat: WireFormat.mlsKeyPackage, keyPackage });
}

describe("DS basics", () => {
  let t: TestDs;
  beforeAll(async () => {
    t = await startTestDs({ devMode: true, maxKeyPackagesPerDevice: 10, rateLimits: { eventsPerSecond: 5, eventBurst: 20, disconnectAfter: 1000 } });
  });
  afterAll(async () => t.close());

  describe("authentication", () => {
    it("refuses a connection without a token, with a forged token and with an expired token", async () => {
      await expect(connectSocket(t.ds.url, undefined)).rejects.toMatchObject({ message: "unauthorized" });
      const forged = await new TokenAuthority(new TextEncoder().encode("another-key-that-is-long-enough-000000")).issue({ user: "mallory", device: "d1", rooms: ["*"] }, 60);
      await expect(connectSocket(t.ds.url, forged)).rejects.toMatchObject({ message: "unauthorized" });
      const expired = await new TokenAuthority(new TextEncoder().encode("integration-test-key-0123456789abcdef")).issue({ user: "old", device: "d1", rooms: ["*"] }, -10);
      await expect(connectSocket(t.ds.url, expired)).rejects.toMatchObject({ message: "unauthorized", data: { code: "unauthorized", message: "token expired" } });
    });

    it("issues development tokens over HTTP that the DS accepts", async () => {
      const res = await fetch(`${t.ds.url}/dev/token?name=${encodeURIComponent("Zoë Ünïcode")}&rooms=standup,retro`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { token: string; user: string; device: string; rooms: string[] };
      expect(body).toMatchObject({ user: "Zoë Ünïcode", rooms: ["standup", "retro"] });
      expect(body.device).toMatch(/^[A-Za-z0-9_-]+$/);
      const socket = await connectSocket(t.ds.url, body.token);
      expect(ok(await request(socket, "room:join", { room: "standup" }))).toMatchObject({ group: null });
      expect(errorCode(await request(socket, "room:join", { room: "other" }))).toBe("forbidden-room");
      socket.disconnect();
    });

    it("refuses development tokens for bad names", async () => {
      expect((await fetch(`${t.ds.url}/dev/token`)).status).toBe(400);
      expect((await fetch(`${t.ds.url}/dev/token?name=a%00b`)).status).toBe(400);
      const post = await fetch(`${t.ds.url}/dev/token`, { method: "POST", body: JSON.stringify({ name: "Bob", device: "laptop" }) });
      expect(await post.json()).toMatchObject({ user: "Bob", device: "laptop", rooms: ["*"] });
    });

    it("has no development endpoint outside development mode", async () => {
      const prod = await startTestDs();
      try {
        expect((await fetch(`${prod.ds.url}/dev/token?name=Alice`)).status).toBe(404);
      } finally {
        await prod.close();
      }
    });
  });

  describe("payload validation", () => {
    it("refuses unknown events, malformed payloads, unknown fields and oversized fields with typed errors", async () => {
      const s = await t.client({ user: "val" });
      expect(errorCode(await request(s, "no:such-event", {}))).toBe("invalid-payload");
      expect(errorCode(await request(s, "room:join", "room"))).toBe("invalid-payload");
      expect(errorCode(await request(s, "room:join", { room: "" }))).toBe("invalid-payload");
      expect(errorCode(await request(s, "room:join", { room: "x", extra: 1 }))).toBe("invalid-payload");
      expect(errorCode(await request(s, "room:join", { room: "x".repeat(500) }))).toBe("payload-too-large");
      expect(errorCode(await request(s, "kp:upload", { keyPackages: [new Uint8Array(70_000)] }))).toBe("payload-too-large");
      expect(errorCode(await request(s, "group:send", { groupId: "zz", message: new Uint8Array(4) }))).toBe("invalid-payload");
      expect(errorCode(await request(s, "kp:claim", { user: "u", suites: [1.5] }))).toBe("invalid-payload");
      s.disconnect();
    });
  });

  describe("KeyPackage directory", () => {
    it("stores KeyPackages whose credential names the uploading device, and refuses others", async () => {
      const alice = await t.client({ user: "alice", device: "phone" });
      const r = ok(await request<{ stored: number; inventory: unknown[] }>(alice, "kp:upload", { keyPackages: [await keyPackage("alice/phone"), await keyPackage("alice/phone")] }));
      expect(r.stored).toBe(2);
      expect(r.inventory).toEqual([{ suite: 1, available: 2, lastResort: false }]);
      expect(errorCode(await request(alice, "kp:upload", { keyPackages: [await keyPackage("bob/phone")] }))).toBe("wrong-identity");
      expect(errorCode(await request(alice, "kp:upload", { keyPackages: [await keyPackage("alice/laptop")] }))).toBe("wrong-identity");
      expect(errorCode(await request(alice, "kp:upload", { keyPackages: [new Uint8Array([0, 1, 0, 5, 1])] }))).toBe("malformed-message");
      // A valid KeyPackage with one signature byte flipped.
      const tampered = await keyPackage("alice/phone");
      tampered[tampered.length - 1]! ^= 1;
      expect(errorCode(await request(alice, "kp:upload", { keyPackages: [tampered] }))).toBe("invalid-key-package");
      // All or nothing: one bad KeyPackage refuses the good one beside it.
      expect(errorCode(await request(alice, "kp:upload", { keyPackages: [await keyPackage("alice/phone"), await keyPackage("eve/phone")] }))).toBe("wrong-identity");
      expect(ok(await request<{ inventory: unknown[] }>(alice, "kp:status", {})).inventory).toEqual([{ suite: 1, available: 2, lastResort: false }]);
      alice.disconnect();
    });

    it("limits how many KeyPackages a device keeps", async () => {
      const s = await t.client({ user: "hoarder" });
      ok(await request(s, "kp:upload", { keyPackages: await Promise.all(Array.from({ length: 6 }, () => keyPackage("hoarder/d1"))) }));
      const more = await Promise.all(Array.from({ length: 5 }, () => keyPackage("hoarder/d1")));
      expect(errorCode(await request(s, "kp:upload", { keyPackages: more }))).toBe("too-many-key-packages");
      expect(ok(await request<{ stored: number }>(s, "kp:upload", { keyPackages: more.slice(0, 4) })).stored).toBe(4);
      s.disconnect();
    });

    it("claims one bundle per device in a common suite, each KeyPackage once, last resort only when nothing else is left", async () => {
      const laptop = await t.client({ user: "carol", device: "laptop" });
      const phone = await t.client({ user: "carol", device: "phone" });
      ok(await request(laptop, "kp:upload", { keyPackages: [await keyPackage("carol/laptop", 1), await keyPackage("carol/laptop", 3), await keyPackage("carol/laptop", 1, true)] }));
      ok(await request(phone, "kp:upload", { keyPackages: [await keyPackage("carol/phone", 1)] }));
      const dave = await t.client({ user: "dave" });

      const first = ok(await request<{ suite: number; devices: { device: string; keyPackage: unknown; identityKey: unknown; lastResort: boolean }[]; exhausted: string[] }>(dave, "kp:claim", { user: "carol", suites: [3, 1] }));
      // Suite 3 is only on the laptop, so the common suite is 1.
      expect(first.suite).toBe(1);
      expect(first.devices.map((d) => [d.device, d.lastResort]).sort()).toEqual([
        ["laptop", false],
        ["phone", false],
      ]);
      for (const d of first.devices) {
        const m = decode(decodeMLSMessage, bytesOf(d.keyPackage));
        expect(m.wireFormat).toBe(WireFormat.mlsKeyPackage);
        if (m.wireFormat !== WireFormat.mlsKeyPackage) continue;
        expect(new TextDecoder().decode((m.keyPackage.leafNode.credential as { identity: Uint8Array }).identity)).toBe(`carol/${d.device}`);
        expect(d.identityKey).toBe(toHex(m.keyPackage.leafNode.signatureKey));
      }

      // The phone has nothing left; the laptop hands out its last resort, and keeps handing it out.
      const second = ok(await request<{ devices: { device: string; lastResort: boolean }[]; exhausted: string[] }>(dave, "kp:claim", { user: "carol", suites: [1] }));
      expect(second.devices).toMatchObject([{ device: "laptop", lastResort: true }]);
      expect(second.exhausted).toEqual(["phone"]);
      const third = ok(await request<{ devices: { device: string; lastResort: boolean; keyPackage: unknown }[] }>(dave, "kp:claim", { user: "carol", suites: [1] }));
      expect(third.devices).toMatchObject([{ device: "laptop", lastResort: true }]);

      expect(errorCode(await request(dave, "kp:claim", { user: "carol", suites: [2, 5] }))).toBe("no-common-suite");
      expect(errorCode(await request(dave, "kp:claim", { user: "nobody", suites: [1] }))).toBe("unknown-user");
      for (const s of [laptop, phone, dave]) s.disconnect();
    });

    it("serves up to 10 devices of a user in one claim and refuses an 11th device", async () => {
      const devices = await Promise.all(Array.from({ length: 11 }, (_, i) => t.client({ user: "fleet", device: `dev${i}` })));
      for (let i = 0; i < 10; i++) ok(await request(devices[i]!, "kp:upload", { keyPackages: [await keyPackage(`fleet/dev${i}`)] }));
      expect(errorCode(await request(devices[10]!, "kp:upload", { keyPackages: [await keyPackage("fleet/dev10")] }))).toBe("too-many-devices");
      const claimer = await t.client({ user: "fleet-claimer" });
      const claim = ok(await request<{ devices: unknown[] }>(claimer, "kp:claim", { user: "fleet", suites: [1] }));
      expect(claim.devices).toHaveLength(10);
      for (const s of [...devices, claimer]) s.disconnect();
    });

    it("never hands out the same single-use KeyPackage twice to concurrent claimers", async () => {
      const erin = await t.client({ user: "erin" });
      ok(await request(erin, "kp:upload", { keyPackages: await Promise.all([1, 2, 3].map(() => keyPackage("erin/d1"))) }));
      const claimers = await Promise.all([1, 2, 3, 4, 5].map((i) => t.client({ user: `claimer${i}` })));
      const replies = await Promise.all(claimers.map((c) => request<{ devices: { keyPackage: unknown }[] }>(c, "kp:claim", { user: "erin", suites: [1] })));
      const got = replies.filter((r) => r.ok).flatMap((r) => (r.ok ? r.devices.map((d) => Buffer.from(bytesOf(d.keyPackage)).toString("hex")) : []));
      expect(got).toHaveLength(3);
      expect(new Set(got).size).toBe(3);
      expect(replies.filter((r) => !r.ok).map(errorCode)).toEqual(["key-packages-exhausted", "key-packages-exhausted"]);
      for (const s of [erin, ...claimers]) s.disconnect();
    });
  });

  describe("abuse", () => {
    it("rate-limits a flood of events per connection, without affecting other connections", async () => {
      const flooder = await t.client({ user: "flooder" });
      const calm = await t.client({ user: "calm" });
      const replies = await Promise.all(Array.from({ length: 60 }, () => request(flooder, "kp:status", {})));
      const limited = replies.filter((r) => !r.ok && r.error.code === "rate-limited").length;
      expect(limited).toBeGreaterThan(0);
      expect(replies.filter((r) => r.ok).length).toBeLessThan(60);
      expect(ok(await request(calm, "kp:status", {}))).toMatchObject({ inventory: [] });
      flooder.disconnect();
      calm.disconnect();
    });

    it("disconnects a connection that keeps flooding past its refusals", async () => {
      const d = await startTestDs({ rateLimits: { eventsPerSecond: 1, eventBurst: 5, disconnectAfter: 20 } });
      try {
        const s = await d.client({ user: "persistent" });
        const closed = new Promise((resolve) => s.once("disconnect", resolve));
        for (let i = 0; i < 40; i++) s.emit("kp:status", {});
        await expect(closed).resolves.toBe("io server disconnect");
      } finally {
        await d.close();
      }
    });
  });

  describe("metrics", () => {
    it("serves Prometheus text with connections, refusals and KeyPackage counts", async () => {
      const s = await t.client({ user: "watcher" });
      const text = await (await fetch(`${t.ds.url}/metrics`)).text();
      expect(text).toMatch(/^# TYPE conclave_ds_connections gauge$/m);
      expect(Number(/^conclave_ds_connections (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
      expect(text).toMatch(/^conclave_ds_refusals_total\{code="wrong-identity",event="kp:upload"\} \d+$/m);
      expect(text).toMatch(/^conclave_ds_key_packages_claimed_total\{kind="last-resort"\} \d+$/m);
      expect(text).toMatch(/^conclave_ds_fanout_seconds_bucket\{le="\+Inf"\} \d+$/m);
      s.disconnect();
    });
  });
});
