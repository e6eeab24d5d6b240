/**
 * The Redis backplane on its own: two Socket.IO servers on one redis-server started for this file.
 * A broadcast on one reaches the room's sockets on the other (binary intact), and a client whose
 * connection broke recovers its session (rooms, missed packets) on the other node.
 */
import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server, type Socket as ServerSocket } from "socket.io";
import { io as connect, type Socket } from "socket.io-client";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisBackplane, type RedisBackplane } from "../../sfu-signaling/redis-backplane.js";
import { startRedis, type TestRedis } from "./redis-server.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";

interface Node {
  readonly io: Server;
  readonly http: HttpServer;
  readonly port: number;
  readonly backplane: RedisBackplane;
  readonly recovered: boolean[];
  readonly disconnects: string[];
}

async function startNode(url: string, keyPrefix: string): Promise<Node> {
  const backplane = await createRedisBackplane({ url, keyPrefix });
  const http = createServer();
  const io = new Server(http, { serveClient: false, ...backplane.serverOptions });
  const node: Node = { io, http, port: 0, backplane, recovered: [], disconnects: [] };
  io.on("connection", (socket: ServerSocket) => {
    node.recovered.push(socket.recovered);
    socket.on("join", async (room: string, ack: () => void) => {
      await socket.join(room);
      ack();
    });
    socket.on("say", (room: string, payload: unknown) => io.to(room).emit("msg", payload));
    socket.on("disconnect", (reason) => node.disconnects.push(reason));
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  return Object.assign(node, { port: (http.address() as AddressInfo).port });
}

async function stopNode(node: Node): Promise<void> {
  await new Promise<void>((resolve) => node.io.close(() => resolve()));
  await node.backplane.close();
}

function client(port: number, opts: { reconnection?: boolean } = {}): Promise<Socket> {
  const socket = connect(`http://127.0.0.1:${port}`, { transports: ["websocket"], forceNew: true, reconnection: opts.reconnection ?? false });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

function next(socket: Socket, event: string): Promise<unknown> {
  return new Promise((resolve) => socket.once(event, resolve));
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("Redis backplane", () => {
  let redis: TestRedis;
  let inspect: Redis;
  const prefix = "bp:";
  let node1: Node;
  let node2: Node;
  let proxy: TcpProxy;
  let target = 0;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    inspect = new Redis(redis.url);
    node1 = await startNode(redis.url, prefix);
    node2 = await startNode(redis.url, prefix);
    target = node1.port;
    proxy = await startTcpProxy(() => target);
  });
  afterAll(async () => {
    for (const s of sockets) s.close();
    await proxy?.close();
    for (const n of [node1, node2]) if (n) await stopNode(n);
    inspect?.disconnect();
    await redis?.destroy();
  });

  it("delivers a room broadcast from one node to the room's sockets on the other, binary intact", async () => {
    const a = await client(node1.port);
    const b = await client(node2.port);
    const outsider = await client(node2.port);
    sockets.push(a, b, outsider);
    await a.emitWithAck("join", "r1");
    await b.emitWithAck("join", "r1");
    let leaked = 0;
    outsider.on("msg", (m) => m !== "barrier" && leaked++);
    const gotB = next(b, "msg");
    const gotA = next(a, "msg");
    a.emit("say", "r1", { seq: 7, message: Buffer.from([0, 10, 255, 13]) });
    for (const got of [await gotA, await gotB]) {
      const m = got as { seq: number; message: Buffer };
      expect(m.seq).toBe(7);
      expect([...new Uint8Array(m.message)]).toEqual([0, 10, 255, 13]);
    }
    // A later broadcast to the outsider's own room is a barrier: the first one never reached it.
    await outsider.emitWithAck("join", "r2");
    const barrier = next(outsider, "msg");
    b.emit("say", "r2", "barrier");
    expect(await barrier).toBe("barrier");
    expect(leaked).toBe(0);
  });

  it("lets a client whose connection broke recover its session on the other node, with the packets it missed", async () => {
    const c = await client(proxy.port);
    sockets.push(c);
    await c.emitWithAck("join", "r3");
    // Something reaches c normally first, so it holds an offset to recover from.
    const first = next(c, "msg");
    node2.io.to("r3").emit("msg", "before");
    expect(await first).toBe("before");

    const disconnectsBefore = node1.disconnects.length;
    target = node2.port;
    proxy.cut();
    await until(() => node1.disconnects.length > disconnectsBefore, "node 1 to notice the broken connection");
    await until(async () => (await inspect.keys(`${prefix}sio:session:*`)).length > 0, "the session to be stored in Redis");
    // Sent while c is away, from either node.
    node1.io.to("r3").emit("msg", "missed-1");
    node2.io.to("r3").emit("msg", "missed-2");
    const received: unknown[] = [];
    c.on("msg", (m) => received.push(m));
    const recoveredBefore = node2.recovered.length;
    c.connect();
    await next(c, "connect");
    expect(c.recovered).toBe(true);
    expect(node2.recovered.slice(recoveredBefore)).toEqual([true]);
    await until(() => received.length >= 2, "the missed packets");
    expect(received).toEqual(["missed-1", "missed-2"]);
    // The recovered socket is back in its room on the new node.
    const after = next(c, "msg");
    node2.io.to("r3").emit("msg", "after");
    expect(await after).toBe("after");
  });
});
