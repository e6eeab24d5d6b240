/**
 * A loopback TCP proxy for fault tests: a balancer in front of several DS nodes (each new connection goes
 * where `pick` says), or a wire between the store and Redis that can lose a reply.
 */
import { createServer, connect, type Socket } from "node:net";

export interface TcpProxy {
  readonly port: number;
  /** The next chunk the backend sends on any connection is thrown away, and that connection cut. */
  dropNextReply(): void;
  /** Whether the reply drop armed by dropNextReply() has happened. */
  readonly replyDropped: boolean;
  /** Cuts the open connections (those to one backend port, if given), as a network failure would; new ones are accepted. */
  cut(backendPort?: number): void;
  close(): Promise<void>;
}

/** `pick` names the backend port for each new client connection (undefined: refuse it). */
export async function startTcpProxy(pick: () => number | undefined): Promise<TcpProxy> {
  const pairs = new Map<[Socket, Socket], number>();
  let dropArmed = false;
  let dropped = false;
  const server = createServer((client) => {
    const port = pick();
    if (port === undefined) {
      client.destroy();
      return;
    }
    const backend = connect(port, "127.0.0.1");
    const pair: [Socket, Socket] = [client, backend];
    pairs.set(pair, port);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      backend.destroy();
    };
    client.on("data", (chunk) => backend.write(chunk));
    backend.on("data", (chunk) => {
      if (dropArmed) {
        dropArmed = false;
        dropped = true;
        end();
        return;
      }
      client.write(chunk);
    });
    client.on("close", end);
    backend.on("close", end);
    client.on("error", end);
    backend.on("error", end);
  });
  const cut = (backendPort?: number) => {
    for (const [pair, port] of pairs) {
      if (backendPort !== undefined && port !== backendPort) continue;
      pairs.delete(pair);
      pair[0].destroy();
      pair[1].destroy();
    }
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    dropNextReply() {
      dropArmed = true;
      dropped = false;
    },
    get replyDropped() {
      return dropped;
    },
    cut,
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
