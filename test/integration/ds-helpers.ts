/**
 * Shared by the DS integration tests: a real DS on a loopback port, tokens, and socket.io-client connections
 * with a promise-returning request helper.
 */
import { io as connect, type Socket } from "socket.io-client";
import { TokenAuthority, type Principal } from "../../sfu-signaling/auth.js";
import { startDs, type DsOptions, type RunningDs } from "../../sfu-signaling/server.js";
import { SqliteStore } from "../../sfu-signaling/store/sqlite.js";
import type { Store } from "../../sfu-signaling/store/store.js";

export const TOKEN_KEY = new TextEncoder().encode("integration-test-key-0123456789abcdef");

export interface TestDs {
  readonly ds: RunningDs;
  readonly store: Store;
  token(principal: Partial<Principal> & { user: string }): Promise<string>;
  client(principal: Partial<Principal> & { user: string }): Promise<Socket>;
  close(): Promise<void>;
}

export type Reply<T = Record<string, unknown>> = ({ ok: true } & T) | { ok: false; error: { code: string; message: string; [k: string]: unknown } };

export async function startTestDs(options: Partial<DsOptions> = {}): Promise<TestDs> {
  const store = options.store ?? new SqliteStore({ path: ":memory:" });
  const ds = await startDs({ store, tokenKey: TOKEN_KEY, leaveGraceMs: 200, ...options });
  const authority = new TokenAuthority(TOKEN_KEY);
  const sockets: Socket[] = [];
  const token = (p: Partial<Principal> & { user: string }) => authority.issue({ device: "d1", rooms: ["*"], ...p }, 3600);
  return {
    ds,
    store,
    token,
    async client(p) {
      const socket = await connectSocket(ds.url, await token(p));
      sockets.push(socket);
      return socket;
    },
    async close() {
      for (const s of sockets) s.disconnect();
      await ds.close();
      await store.close();
    },
  };
}

export function connectSocket(url: string, token: string | undefined, opts: { reconnection?: boolean } = {}): Promise<Socket> {
  const socket = connect(url, { auth: token === undefined ? {} : { token }, transports: ["websocket"], reconnection: opts.reconnection ?? false, forceNew: true });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (e) => {
      socket.close();
      reject(e);
    });
  });
}

export function request<T = Record<string, unknown>>(socket: Socket, event: string, payload: unknown): Promise<Reply<T>> {
  return socket.timeout(20_000).emitWithAck(event, payload) as Promise<Reply<T>>;
}

/** The reply's error code, failing the test when the request unexpectedly succeeded. */
export function errorCode(reply: Reply<unknown>): string {
  if (reply.ok) throw new Error("expected a refusal, got success");
  return reply.error.code;
}

export function ok<T>(reply: Reply<T>): T {
  if (!reply.ok) throw new Error(`request refused: ${reply.error.code}: ${reply.error.message}`);
  return reply as T;
}

export function bytesOf(v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new Error("expected binary data");
}
