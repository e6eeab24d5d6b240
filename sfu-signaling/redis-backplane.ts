/**
 * Cross-node fan-out for several DS nodes on one Redis: the Socket.IO Redis streams adapter, so that
 * `io.to(room).emit(...)` on one node reaches the room's sockets on every node, plus Socket.IO's
 * connection-state recovery, whose sessions the adapter keeps in Redis so a client can recover on any node.
 *
 *   const backplane = await createRedisBackplane({ url: process.env.REDIS_URL });
 *   const io = new Server(http, { ...ownOptions, ...backplane.serverOptions });
 *   ...
 *   io.close(); await backplane.close();
 *
 * Recovery only restores the socket's rooms and the packets it missed while a *surviving* node kept its
 * session (a network blip). A client whose node died has no session to recover: it gets a new one and
 * resumes each group log by seq (`group:subscribe { after }`), which works on any node because the log
 * is in the shared store.
 */
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { Redis, type RedisOptions } from "ioredis";
import type { ServerOptions } from "socket.io";
import { quitOrCut } from "./store/redis.js";

export interface RedisBackplaneOptions {
  readonly url: string;
  /** Prefix of the stream, pub/sub channels and session keys; use the store's so one deployment shares one namespace. */
  readonly keyPrefix?: string;
  /** How long a disconnected client's session (rooms, missed packets) is kept for recovery. Default 2 min. */
  readonly maxDisconnectionDurationMs?: number;
  /** Entries kept in the fan-out stream (approximate trimming); bounds what recovery can replay. Default 10 000. */
  readonly maxStreamLength?: number;
  readonly log?: (line: string) => void;
  readonly redis?: RedisOptions;
}

export interface RedisBackplane {
  /** Spread into the Socket.IO `Server` options. */
  readonly serverOptions: Pick<Partial<ServerOptions>, "adapter" | "connectionStateRecovery">;
  /** Disconnects every Redis connection of the backplane; call after `io.close()`. */
  close(): Promise<void>;
}

/**
 * The adapter fires some commands and forgets them (the session write on a disconnect, pub/sub requests):
 * while Redis is away, their rejections would be unhandled and end the process. Every command's promise
 * is therefore marked handled here (callers that await it still see the error; connection trouble is
 * logged once through the "error" event). Connections the adapter derives (its stream reader and its
 * subscriber) are of this class too, and are kept so close() reaches them.
 */
class BackplaneRedis extends Redis {
  readonly derived: Redis[] = [];

  override sendCommand(...args: Parameters<Redis["sendCommand"]>): unknown {
    const result = super.sendCommand(...args);
    if (result instanceof Promise) result.catch(() => {});
    return result;
  }

  override duplicate(override?: Partial<RedisOptions>): Redis {
    const copy = new BackplaneRedis({ ...this.options, ...override });
    this.derived.push(copy);
    return copy;
  }
}

export async function createRedisBackplane(options: RedisBackplaneOptions): Promise<RedisBackplane> {
  const prefix = options.keyPrefix ?? "conclave:";
  const log = options.log ?? (() => {});
  const redis = new BackplaneRedis(options.url, { lazyConnect: true, ...options.redis });
  let lastError = "";
  redis.on("error", (e: Error) => {
    if (e.message !== lastError) log(`redis backplane: ${e.message}`);
    lastError = e.message;
  });
  redis.on("ready", () => {
    if (lastError) log("redis backplane: connected again");
    lastError = "";
  });
  try {
    await redis.connect();
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  const adapter = createAdapter(redis, {
    streamName: `${prefix}socket.io`,
    channelPrefix: `${prefix}socket.io`,
    sessionKeyPrefix: `${prefix}sio:session:`,
    maxLen: options.maxStreamLength ?? 10_000,
    // The reader notices close() only between two blocking reads.
    blockTimeInMs: 1000,
  });
  return {
    serverOptions: {
      adapter,
      connectionStateRecovery: {
        maxDisconnectionDuration: options.maxDisconnectionDurationMs ?? 120_000,
        // A recovering client shows its token again: it may have expired or been revoked meanwhile.
        skipMiddlewares: false,
      },
    },
    async close() {
      // Queued commands (the adapter's farewell to the other nodes) go out first.
      await Promise.all([redis, ...redis.derived].map((c) => quitOrCut(c)));
    },
  };
}
