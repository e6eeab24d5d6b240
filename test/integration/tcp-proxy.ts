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
  /** Cuts every open connection, as a network failure would (new connections are accepted). */
  cutAll(): void;
  close(): Promise<void>;
}

/** `pick` names the backend port for each new client connection (undefined: refuse it). */
export async function startTcpProxy(pick: () => number | undefined): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
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
    pairs.add(pair);
    const cut = () => {
      pairs.delete(pair);
      client.destroy();
      backend.destroy();
    };
    client.on("data", (chunk) => backend.write(chunk));
    backend.on("data", (chunk) => {
      if (dropArmed) {
        dropArmed = false;
        dropped = true;
        cut();
        return;
      }
      client.write(chunk);
    });
    client.on("close", cut);
    backend.on("close", cut);
    client.on("error", cut);
    backend.on("error", cut);
  });
  const cutAll = () => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
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
    cutAll,
    async close() {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
