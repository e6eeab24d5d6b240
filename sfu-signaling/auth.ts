/**
 * Connection authentication: an HS256 JWT whose claims name the user (`sub`), the device (`device`) and the
 * rooms it may join (`rooms`, "*" for any). The DS verifies it once, in the Socket.IO handshake, before any
 * event handler exists for the socket. Development mode issues such tokens for any display name.
 */
import { SignJWT, jwtVerify, errors as joseErrors } from "jose";
import { DsError } from "./errors.js";
import { ROOM, arr, parse, str, type Schema } from "./validate.js";

export { memberId } from "./protocol.js";

export interface Principal {
  readonly user: string;
  readonly device: string;
  /** Rooms this connection may join; "*" grants every room. */
  readonly rooms: readonly string[];
}

/** Device ids name one installation; they end every credential identity ("user/device"), so no "/" in them. */
export const DEVICE = str({ min: 1, max: 64, pattern: /^[A-Za-z0-9_-]+$/ });
/** User ids are display names in development mode and "name@provider" ids otherwise: printable, bounded. */
export const USER = str({ min: 1, max: 128, pattern: /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]+$/u });
const ROOM_GRANT: Schema<string> = (v, path) => (v === "*" ? "*" : ROOM(v, path));
const ROOMS = arr(ROOM_GRANT, { min: 1, max: 64 });

export interface TokenOptions {
  readonly issuer?: string;
  readonly audience?: string;
}

export class TokenAuthority {
  constructor(
    private readonly key: Uint8Array,
    private readonly options: TokenOptions = {},
  ) {
    if (key.length < 32) throw new Error("the token signing key must be at least 32 bytes");
  }

  async issue(principal: Principal, ttlSeconds: number): Promise<string> {
    let jwt = new SignJWT({ device: principal.device, rooms: [...principal.rooms] })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(principal.user)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds);
    if (this.options.issuer) jwt = jwt.setIssuer(this.options.issuer);
    if (this.options.audience) jwt = jwt.setAudience(this.options.audience);
    return jwt.sign(this.key);
  }

  /** The token's principal, or DsError "unauthorized" (the reason is kept vague on purpose). */
  async verify(token: unknown): Promise<Principal> {
    if (typeof token !== "string" || token.length === 0 || token.length > 8192) throw new DsError("unauthorized", "missing or oversized token");
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: ["HS256"],
        requiredClaims: ["sub", "exp"],
        issuer: this.options.issuer,
        audience: this.options.audience,
      }));
    } catch (e) {
      if (e instanceof joseErrors.JOSEError) throw new DsError("unauthorized", e.code === "ERR_JWT_EXPIRED" ? "token expired" : "invalid token");
      throw e;
    }
    try {
      return { user: parse(USER, payload.sub), device: parse(DEVICE, payload.device), rooms: parse(ROOMS, payload.rooms) };
    } catch {
      throw new DsError("unauthorized", "token claims are malformed");
    }
  }
}

export function mayJoin(principal: Principal, room: string): boolean {
  return principal.rooms.includes("*") || principal.rooms.includes(room);
}
