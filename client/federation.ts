/**
 * What a participant needs of federation (sfu-signaling/federation/): device-change events of the users in
 * its calls, and client fan-out, i.e. a connection straight to the DS hosting a call of another provider,
 * with a token that DS issued through the user's own DS. Server fan-out needs nothing here: a room named
 * "name@b.example" is joined through one's own DS like any other room.
 */
import type { DeviceChange, HubToken } from "../sfu-signaling/federation/protocol.js";
import { DsConnection, type DsConnectionOptions } from "./ds-connection.js";
import { DsProtocolError } from "./protocol.js";

export type { DeviceChange, HubToken };

const MAX_ID = 256;

function parseDeviceChange(v: unknown): DeviceChange {
  const o = typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  const ok = (x: unknown) => typeof x === "string" && x.length > 0 && x.length <= MAX_ID;
  if (!ok(o.groupId) || !ok(o.user) || !ok(o.device) || (o.change !== "added" && o.change !== "removed")) throw new DsProtocolError("user:device: malformed push");
  return { groupId: o.groupId as string, user: o.user as string, device: o.device as string, change: o.change };
}

/** Calls `handler` whenever a user in one of this connection's calls adds or retires a device; returns `off`. */
export function onDeviceChange(connection: DsConnection, handler: (change: DeviceChange) => void): () => void {
  const listener = (payload: unknown) => {
    let change: DeviceChange;
    try {
      change = parseDeviceChange(payload);
    } catch {
      return;
    }
    handler(change);
  };
  connection.socket.on("user:device", listener);
  return () => connection.socket.off("user:device", listener);
}

/** Retires one of this user's devices: the calls it is in hear of it and remove it. */
export async function retireDevice(connection: DsConnection, device: string): Promise<void> {
  await connection.request("devices:remove", { device });
}

/** A token of the DS hosting `room`, obtained through `home` (the user's own DS). */
export async function hubToken(home: DsConnection, room: string): Promise<HubToken> {
  const r = await home.request("federation:hub-token", { room });
  if (typeof r.hub !== "string" || typeof r.token !== "string" || (r.url !== undefined && typeof r.url !== "string")) throw new DsProtocolError("federation:hub-token: malformed reply");
  return { hub: r.hub, token: r.token, ...(typeof r.url === "string" ? { url: r.url } : {}) };
}

/**
 * Client fan-out: a connection to the DS hosting `room` (the home connection itself when that is the
 * user's own DS). The token is fetched again through `home` at each reconnect, so it never expires under it.
 */
export async function connectToHub(home: DsConnection, room: string, options: Omit<DsConnectionOptions, "url" | "token"> = {}): Promise<DsConnection> {
  const first = await hubToken(home, room);
  if (first.url === undefined) return home;
  let unused: string | undefined = first.token;
  const token = async () => {
    const t = unused ?? (await hubToken(home, room)).token;
    unused = undefined;
    return t;
  };
  return DsConnection.connect({ ...options, url: first.url, token });
}
