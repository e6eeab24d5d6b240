/**
 * A late subscriber of a mirrored group gets the entries the mirror no longer holds from the hub, page by
 * page. A hub whose pages do not advance must not keep the follower DS reading (and buffering) forever.
 */
import { describe, expect, it } from "vitest";
import type { Socket } from "socket.io";
import type { Principal } from "../../sfu-signaling/auth.js";
import { FollowerRole } from "../../sfu-signaling/federation/follower.js";
import type { PeerLink } from "../../sfu-signaling/federation/link.js";
import { linkSchemas } from "../../sfu-signaling/federation/schemas.js";
import type { WireEntry } from "../../sfu-signaling/protocol.js";
import type { DsInternals } from "../../sfu-signaling/server.js";

const GROUP = "ab".repeat(16);

function entry(seq: number): WireEntry {
  return { groupId: GROUP, seq, epoch: 0, kind: "application", sender: "bob@b.example/d1", message: Uint8Array.of(1, 2, 3), at: 1 };
}

function fakeSocket(principal: Principal): Socket & { received: unknown[] } {
  const received: unknown[] = [];
  return {
    data: { principal },
    received,
    emit: (_event: string, e: unknown) => received.push(e),
    join: async () => undefined,
    leave: async () => undefined,
  } as unknown as Socket & { received: unknown[] };
}

describe("follower: reading old entries from the hub", () => {
  it("stops when the hub's page does not advance", async () => {
    let reads = 0;
    const hub = {
      request: async (event: string): Promise<Record<string, unknown>> => {
        if (event === "fed:follow") {
          return { group: { groupId: GROUP, room: "r@a.example", suite: 1, epoch: 0, seq: 0, groupInfo: Uint8Array.of(0), tree: Uint8Array.of(0) }, head: 0 };
        }
        if (event === "fed:read") {
          reads++;
          // Stuck: always the first entry, whatever `after` asks for.
          return { entries: [entry(1)] };
        }
        return {};
      },
    } as unknown as PeerLink;
    const follower = new FollowerRole({
      ds: { io: { to: () => ({ emit: () => true }) } } as unknown as DsInternals,
      domain: "b.example",
      schemas: linkSchemas(1 << 20),
      link: () => hub,
      peers: () => ["a.example"],
      mirrorEntries: 1,
      log: () => undefined,
    });
    follower.learnHub(GROUP, "a.example");
    const alice = { user: "alice@b.example", device: "d1", rooms: ["*"] };
    await follower.subscribe(alice, fakeSocket(alice), GROUP, 0);
    // Three live entries; the mirror keeps only the last, so entries 1 and 2 must come from the hub.
    for (const seq of [1, 2, 3]) follower.entry("a.example", { groupId: GROUP, entry: entry(seq) });

    const bob = { user: "bob@b.example", device: "d1", rooms: ["*"] };
    const socket = fakeSocket(bob);
    const reply = await follower.subscribe(bob, socket, GROUP, 0);
    expect(reply).toEqual({ epoch: 0, seq: 3 });
    expect(reads).toBe(2);
    expect(socket.received.map((e) => (e as WireEntry).seq)).toEqual([1, 3]);
  });
});
