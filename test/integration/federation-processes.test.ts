/**
 * Issue 8, as deployed: three DS processes of three providers (`main.ts` with DS_FEDERATION_*), one call
 * hosted by a.example with a user of each provider connected to its own DS. Every member must reach the same
 * epoch and safety code after each join and leave (the in-process tests check the hub's log and faults).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DsConnection } from "../../client/ds-connection.js";
import { describePeers, epochOf, fingerprint, until, type Peer } from "./call-helpers.js";
import { sessionPeer, startProviderProcesses, type DsProcess } from "./federation-helpers.js";

const ROOM = "processes@a.example";

describe("three providers as three processes", () => {
  let dses: DsProcess[] = [];
  const peers: Peer[] = [];

  beforeAll(async () => {
    dses = await startProviderProcesses(["a.example", "b.example", "c.example"]);
  });
  afterAll(async () => {
    for (const p of peers) p.connection.close();
    await Promise.all(dses.map((d) => d.stop()));
  });

  async function agreeAt(live: Peer[], epoch: bigint): Promise<string[]> {
    await until(() => live.every((p) => epochOf(p) === epoch), () => `waiting for epoch ${epoch}: ${describePeers(live)}`);
    expect(new Set(live.map((p) => fingerprint(p.session.currentEpoch!))).size, describePeers(live)).toBe(1);
    return live[0]!.session.currentEpoch!.members.map((m) => m.identity).sort();
  }

  it("runs one call across them, with the same safety code everywhere after each join and leave", async () => {
    for (const ds of dses) {
      const user = `${ds.domain.split(".")[0]}-user@${ds.domain}`;
      const connection = await DsConnection.connect({ url: ds.url, token: await ds.token({ user }), transports: ["websocket"] });
      const peer = sessionPeer(connection, user, ROOM);
      peers.push(peer);
      await peer.session.join();
      await agreeAt(peers, BigInt(peers.length - 1));
    }
    expect(peers[0]!.session.currentEpoch!.members.map((m) => m.identity)).toEqual(["a-user@a.example/d1", "b-user@b.example/d1", "c-user@c.example/d1"]);
    const [, b, c] = peers;
    await b!.session.leave();
    expect(await agreeAt([peers[0]!, c!], 3n)).toEqual(["a-user@a.example/d1", "c-user@c.example/d1"]);
    expect(peers.flatMap((p) => p.errors)).toEqual([]);
    expect(dses[0]!.output()).toMatch(/federation: b\.example linked/);
  });
});
