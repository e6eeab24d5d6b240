/**
 * Development mode only: the DS (under `npm start`) issues a connection token for any display name at
 * GET /dev/token, so the demo works without an identity provider. Production tokens come from elsewhere.
 */
import { DsProtocolError, DsRequestError, type DsErrorCode } from "./protocol.js";

export interface DevTokenRequest {
  readonly name: string;
  /** Default: the DS picks a fresh device id. Keep it to come back as the same device. */
  readonly device?: string;
  /** Rooms the token grants (default: every room). */
  readonly rooms?: readonly string[];
}

export interface DevToken {
  readonly token: string;
  readonly user: string;
  readonly device: string;
  readonly rooms: readonly string[];
  /** Seconds since the Unix epoch. */
  readonly expiresAt: number;
}

export async function fetchDevToken(dsUrl: string, request: DevTokenRequest): Promise<DevToken> {
  const url = new URL("/dev/token", dsUrl);
  url.searchParams.set("name", request.name);
  if (request.device !== undefined) url.searchParams.set("device", request.device);
  if (request.rooms !== undefined) url.searchParams.set("rooms", request.rooms.join(","));
  const res = await fetch(url);
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new DsProtocolError(`/dev/token answered ${res.status} without JSON (is the DS in development mode?)`);
  }
  const o = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  if (!res.ok) {
    const error = (o.error ?? {}) as { code?: unknown; message?: unknown };
    throw new DsRequestError("dev-token", (typeof error.code === "string" ? error.code : "invalid-payload") as DsErrorCode, typeof error.message === "string" ? error.message : `HTTP ${res.status}`);
  }
  const { token, user, device, rooms, expiresAt } = o;
  if (typeof token !== "string" || typeof user !== "string" || typeof device !== "string" || !Array.isArray(rooms) || typeof expiresAt !== "number") {
    throw new DsProtocolError("/dev/token answered an unexpected shape");
  }
  return { token, user, device, rooms: rooms.map(String), expiresAt };
}
