/**
 * The client's DS connection: development tokens, refusals surfacing as typed errors, fresh tokens on
 * reconnect, and a call joined with nothing but a display name (what the demo does).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CallSession } from "../../client/call-session.js";
import { fetchDevToken } from "../../client/dev-token.js";
import { DsConnection } from "../../client/ds-connection.js";
import { DsRequestError } from "../../client/protocol.js";
import { EpochKeyring, parseMlsKid, protectFrame, unprotectFrame } from "../../keying/sframe/index.js";
import { TokenAuthority } from "../../sfu-signaling/auth.js";
import { until } from "./call-helpers.js";
import { startTestDs, type TestDs } from "./ds-helpers.js";

describe("client DS connection", () => {
  let t: TestDs;
  const connections: DsConnection[] = [];
  beforeAll(async () => {
    t = await startTestDs({ devMode: true });
  });
  afterAll(async () => {
    for (const c of connections) c.close();
    await t.close();
  });

  async function connect(token: string | (() => Promise<string>)): Promise<DsConnection> {
    const c = await DsConnection.connect({ url: t.ds.url, token, transports: ["websocket"] });
    connections.push(c);
    return c;
  }

  it("joins a call with development tokens and chats", async () => {
    const alice = await fetchDevToken(t.ds.url, { name: "Alice Ünïcode", rooms: ["demo"] });
    const bob = await fetchDevToken(t.ds.url, { name: "Bob", device: "laptop" });
    expect(bob.device).toBe("laptop");
    const ca = await connect(alice.token);
    expect(ca.principal).toEqual({ user: "Alice Ünïcode", device: alice.device });
    const a = new CallSession({ connection: ca, room: "demo" });
    const b = new CallSession({ connection: await connect(bob.token), room: "demo" });
    expect((await a.join()).members.map((m) => m.identity)).toEqual([`Alice Ünïcode/${alice.device}`]);
    const got: string[] = [];
    a.on("message", (m) => got.push(`${m.sender?.identity}: ${m.text}`));
    const joined: string[] = [];
    a.on("member-joined", (e) => joined.push(e.member.identity));
    const first = await b.join();
    await until(() => a.currentEpoch?.epoch === first.epoch, () => "alice did not see bob join");
    expect(a.currentEpoch!.safetyCode).toBe(first.safetyCode);
    expect(joined).toEqual(["Bob/laptop"]);
    await b.chat("hi Alice");
    await until(() => got.length === 1, () => "no chat");
    expect(got).toEqual(["Bob/laptop: hi Alice"]);
    await a.leave();
    await b.leave();
  });

  it("hands each epoch's SFrame key to the media hook before the epoch event: frames cross between members", async () => {
    const rings = { a: new EpochKeyring({ sendContext: 0n }), b: new EpochKeyring() };
    const order: string[] = [];
    const a = new CallSession({
      connection: await connect(await t.token({ user: "media-a" })),
      room: "media",
      onEpochKeys: async (u) => {
        await rings.a.addEpoch(u.epoch, u.myLeafIndex, u.baseKey);
        order.push(`keys ${u.epoch}`);
      },
    });
    a.on("epoch", (e) => order.push(`event ${e.epoch} ${e.cause}`));
    await a.join();
    const b = new CallSession({ connection: await connect(await t.token({ user: "media-b" })), room: "media" });
    const bEpoch = await b.join();
    // Attached late: called at once with the current epoch.
    await b.setEpochKeyHandler((u) => rings.b.addEpoch(u.epoch, u.myLeafIndex, u.baseKey));
    expect(rings.b.epochs).toEqual([bEpoch.epoch]);
    await until(() => a.currentEpoch?.epoch === bEpoch.epoch, () => "a did not reach b's epoch");
    expect(order).toEqual(["keys 0", "event 0 created", "keys 1", "event 1 commit"]);
    const frame = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const sealed = await protectFrame(rings.a.context, rings.a.sendKid!, "opus", frame);
    const opened = await unprotectFrame(rings.b.context, "opus", sealed);
    expect(opened.frame).toEqual(frame);
    expect(parseMlsKid(opened.kid).leafIndex).toBe(a.leafIndex);
    expect(rings.b.epochOf(opened.kid)).toBe(1n);
    await a.leave();
    await b.leave();
  });

  it("puts participants opening an empty room at the same moment into one group", async () => {
    const sessions = await Promise.all(
      ["r1", "r2", "r3"].map(async (user) => new CallSession({ connection: await connect(await t.token({ user })), room: "race" })),
    );
    const firsts = await Promise.all(sessions.map((s) => s.join()));
    expect(new Set(sessions.map((s) => s.groupId)).size).toBe(1);
    expect(firsts.filter((e) => e.epoch === 0n)).toHaveLength(1);
    await until(() => sessions.every((s) => s.currentEpoch?.epoch === 2n), () => sessions.map((s) => s.currentEpoch?.epoch).join(","));
    expect(new Set(sessions.map((s) => s.currentEpoch!.safetyCode)).size).toBe(1);
    await Promise.all(sessions.map((s) => s.leave()));
  });

  it("refuses a forged token with a typed error", async () => {
    const forged = await new TokenAuthority(new TextEncoder().encode("some-other-key-that-is-long-enough-0000")).issue({ user: "mallory", device: "d1", rooms: ["*"] }, 60);
    await expect(DsConnection.connect({ url: t.ds.url, token: forged, transports: ["websocket"] })).rejects.toMatchObject({ name: "DsRequestError", code: "unauthorized" });
  });

  it("fails join() with the DS's reason when the token does not grant the room, and closes the session", async () => {
    const c = await connect(await t.token({ user: "eve", rooms: ["elsewhere"] }));
    const s = new CallSession({ connection: c, room: "demo" });
    const closed: string[] = [];
    s.on("closed", (e) => closed.push(e.reason));
    const err = await s.join().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DsRequestError);
    expect((err as DsRequestError).code).toBe("forbidden-room");
    expect(closed).toEqual(["failed"]);
    await expect(s.chat("x")).rejects.toThrow(/closed/);
  });

  it("asks the token source again for every reconnect", async () => {
    let calls = 0;
    const c = await connect(async () => {
      calls++;
      return t.token({ user: "frank" });
    });
    expect(calls).toBe(1);
    c.socket.io.engine.close();
    await until(() => calls === 2 && c.connected, () => `token source called ${calls} times, connected ${c.connected}`);
    expect((await c.request("room:join", { room: "demo" })).ok).toBe(true);
  });
});
