/**
 * What the DS has queued for one Socket.IO connection and has not yet handed to the kernel: packets waiting
 * in engine.io's write buffer (the transport is busy, or a polling client has not polled yet) plus what the
 * WebSocket holds in user space (ws's bufferedAmount). A client that does not read makes this grow, so a
 * sender that must not allocate without bound (a replay) checks it and waits for the transport to drain.
 */
import type { Socket } from "socket.io";

interface EnginePacket {
  readonly data?: unknown;
}

interface EngineTransport {
  readonly writable?: boolean;
  readonly socket?: { readonly bufferedAmount?: number; terminate?(): void };
  on(event: "drain", fn: () => void): void;
  off(event: "drain", fn: () => void): void;
}

interface EngineSocket {
  readonly readyState: string;
  readonly writeBuffer: readonly EnginePacket[];
  readonly transport: EngineTransport;
  on(event: "upgrade" | "close", fn: () => void): void;
  off(event: "upgrade" | "close", fn: () => void): void;
}

/** The engine connection under a Socket.IO socket; undefined for in-process stand-ins (federation/hub.ts). */
function engineOf(socket: Socket): EngineSocket | undefined {
  const conn = (socket as { conn?: unknown }).conn;
  return typeof conn === "object" && conn !== null && "writeBuffer" in conn ? (conn as EngineSocket) : undefined;
}

/** Whether the socket is a client's connection (not an in-process stand-in). */
export function hasConnection(socket: Socket): boolean {
  return engineOf(socket) !== undefined;
}

function packetBytes(p: EnginePacket): number {
  const d = p.data;
  if (typeof d === "string") return d.length;
  if (d instanceof Uint8Array || d instanceof ArrayBuffer) return d.byteLength;
  return 0;
}

/** Bytes queued for the connection in this process (0 for a stand-in without a connection). */
export function queuedBytes(socket: Socket): number {
  const conn = engineOf(socket);
  if (!conn) return 0;
  let n = 0;
  for (const p of conn.writeBuffer) n += packetBytes(p);
  const ws = conn.transport.socket;
  return n + (typeof ws?.bufferedAmount === "number" ? ws.bufferedAmount : 0);
}

/**
 * Whether nothing sent to the socket will arrive any more: it disconnected, or its connection is closing
 * (which can take a while when the peer stopped reading). Never for a stand-in.
 */
export function connectionGone(socket: Socket): boolean {
  const conn = engineOf(socket);
  return conn !== undefined && (socket.disconnected || conn.readyState === "closed" || conn.readyState === "closing");
}

/**
 * Resolves true once fewer than `below` bytes are queued, false when the socket is gone first. Woken by the
 * transport's drain (the last write reached the kernel), an upgrade (polling to WebSocket), a disconnect;
 * a slow timer re-checks as well, so a drain the transport reports in some other way cannot stall a replay.
 */
export function whenDrained(socket: Socket, below: number): Promise<boolean> {
  const conn = engineOf(socket);
  if (!conn || queuedBytes(socket) < below) return Promise.resolve(true);
  if (connectionGone(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    let transport = conn.transport;
    let pending: NodeJS.Immediate | undefined;
    const finish = (drained: boolean) => {
      transport.off("drain", wake);
      conn.off("upgrade", onUpgrade);
      conn.off("close", onClose);
      socket.off("disconnect", onClose);
      clearInterval(timer);
      if (pending) clearImmediate(pending);
      resolve(drained);
    };
    // The transport emits "drain" before it flushes what queued meanwhile: look once that flush happened.
    const check = () => {
      pending = undefined;
      if (connectionGone(socket)) finish(false);
      else if (queuedBytes(socket) < below) finish(true);
    };
    const wake = () => {
      pending ??= setImmediate(check);
    };
    const onUpgrade = () => {
      transport.off("drain", wake);
      transport = conn.transport;
      transport.on("drain", wake);
      wake();
    };
    const onClose = () => finish(false);
    transport.on("drain", wake);
    conn.on("upgrade", onUpgrade);
    conn.on("close", onClose);
    socket.on("disconnect", onClose);
    const timer = setInterval(wake, 1000);
    timer.unref();
  });
}

/**
 * Disconnects at once, even a peer that stopped reading: a WebSocket close would wait for its closing handshake
 * (ws gives up only after 30 s) behind everything still queued, so the TCP connection is cut instead, and the
 * client sees the drop and reconnects.
 */
export function dropConnection(socket: Socket): void {
  socket.disconnect(true);
  engineOf(socket)?.transport.socket?.terminate?.();
}
