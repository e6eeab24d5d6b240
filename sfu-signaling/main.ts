/**
 * `npm start`: the Conclave delivery service on localhost, with no setup.
 *
 * Settings (flag / environment variable, default):
 *   --host             DS_HOST               127.0.0.1
 *   --port             DS_PORT               8787 (0 = any free port)
 *   --data-dir         DS_DATA_DIR           data/ds   (SQLite file ds.sqlite inside; ":memory:" keeps nothing)
 *   --dev / --no-dev   DS_DEV_MODE           on here, unless NODE_ENV=production. Serves GET|POST /dev/token
 *                                            ?name=Alice[&device=..][&rooms=a,b] issuing a token for any name.
 *   --jwt-secret       DS_JWT_SECRET         HS256 key for connection tokens (>= 32 bytes). Required without
 *                                            dev mode; in dev mode a random key is generated once and kept in
 *                                            the store, so tokens survive a restart.
 *   --jwt-issuer       DS_JWT_ISSUER         unset (when set, tokens must carry this iss)
 *   --jwt-audience     DS_JWT_AUDIENCE       unset (when set, tokens must carry this aud)
 *   --name             DS_NAME               conclave-ds (identity in the DS's external-sender credential)
 *   --leave-grace-ms   DS_LEAVE_GRACE_MS     10000 (disconnect time before the DS proposes a member's removal)
 *   --max-payload-bytes DS_MAX_PAYLOAD_BYTES 1048576 (largest MLS message / GroupInfo / tree per field)
 *   --events-per-second DS_EVENTS_PER_SECOND 50, --event-burst DS_EVENT_BURST 200 (per connection)
 *   --max-key-packages DS_MAX_KEY_PACKAGES   100 (stored KeyPackages per device)
 *   --cors-origin      DS_CORS_ORIGIN        "*" in dev mode, unset otherwise
 *   --metrics-token    DS_METRICS_TOKEN      unset: GET /metrics answers loopback clients only (not through a
 *                                            proxy). Set (>= 16 chars): it requires `Authorization: Bearer <token>`.
 *   --sqlite-sync      DS_SQLITE_SYNC        FULL (NORMAL trades the last commits on power loss for speed)
 *   --redis-url        REDIS_URL             unset: SQLite. Set: Redis store + cross-node fan-out (several nodes)
 *   --redis-prefix     DS_REDIS_PREFIX       conclave: (key namespace; nodes of one deployment share it)
 *   Federation with other providers' DSes: DS_FEDERATION_DOMAIN, DS_FEDERATION_KEY, DS_FEDERATION_PEERS,
 *   DS_PUBLIC_URL (see federation/config.ts; unset: no federation).
 *
 * The SFU (sfu/) rides on the same connections: a device may use a room's media once it has subscribed to
 * that room's call, and loses it as soon as it leaves or stays away past the grace.
 *
 * Tokens: HS256 JWT with `sub` (user), `device` ([A-Za-z0-9_-]{1,64}), `rooms` (list, "*" = any) and `exp`.
 * Prints "Conclave DS listening on <url>" once ready; SIGINT/SIGTERM close it cleanly.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { memberId } from "./auth.js";
import { ConfigError, parseConfig } from "./config.js";
import { serveDemo } from "./demo-files.js";
import { startDs } from "./server.js";
import { createSfu } from "./sfu/index.js";
import { createRedisBackplane, type RedisBackplane } from "./redis-backplane.js";
import { federationConfigFromEnv } from "./federation/config.js";
import { createFederation } from "./federation/index.js";
import { RedisStore } from "./store/redis.js";
import { SqliteStore } from "./store/sqlite.js";
import type { Store } from "./store/store.js";

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2), process.env, true);
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  let store: Store;
  let storeName: string;
  let backplane: RedisBackplane | undefined;
  if (config.redisUrl !== undefined) {
    const redis = await RedisStore.connect({ url: config.redisUrl, keyPrefix: config.redisPrefix, log });
    store = redis;
    storeName = redis.description;
    backplane = await createRedisBackplane({ url: config.redisUrl, keyPrefix: config.redisPrefix, log });
    const durability = await redis.durability();
    if (durability && !durability.crashSafe) {
      log(
        `warning: Redis runs with appendonly=${durability.appendonly} appendfsync=${durability.appendfsync}; a Redis crash can lose ` +
          "acknowledged commits and fork calls (use appendonly yes, appendfsync always)",
      );
    }
  } else {
    storeName = ":memory:";
    if (config.dataDir !== ":memory:") {
      const dir = resolve(config.dataDir);
      mkdirSync(dir, { recursive: true });
      storeName = join(dir, "ds.sqlite");
    }
    store = new SqliteStore({ path: storeName, synchronous: config.sqliteSynchronous });
  }
  const tokenKey = config.jwtSecret !== undefined ? new TextEncoder().encode(config.jwtSecret) : await store.ensureSecret("dev-token-key", randomBytes(32));
  const sfu = createSfu({ log: (event, detail) => log(`sfu ${event}${detail === undefined ? "" : ` ${JSON.stringify(detail)}`}`) });
  // The demo (built by `npm start` into dist/demo) is served in development mode only: it gets its tokens from /dev/token.
  const demoDir = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "demo");
  const demo = config.devMode && existsSync(join(demoDir, "index.html"));
  const federation = federationConfigFromEnv(process.env);
  const ds = await startDs({
    store,
    tokenKey,
    tokenOptions: { issuer: config.jwtIssuer, audience: config.jwtAudience },
    host: config.host,
    port: config.port,
    devMode: config.devMode,
    name: config.name,
    leaveGraceMs: config.leaveGraceMs,
    maxPayloadBytes: config.maxPayloadBytes,
    rateLimits: { eventsPerSecond: config.eventsPerSecond, eventBurst: config.eventBurst },
    maxKeyPackagesPerDevice: config.maxKeyPackagesPerDevice,
    corsOrigin: config.corsOrigin,
    metricsToken: config.metricsToken,
    ...(backplane ? { socketIo: backplane.serverOptions } : {}),
    log,
    onSubscribed: (socket, principal, room) => sfu.attach(socket, { participantId: memberId(principal), room }),
    onDeparted: (room, member) => void sfu.removeParticipant(room, member),
    ...(demo ? { httpFallback: serveDemo(demoDir) } : {}),
    ...(federation ? { extension: createFederation({ ...federation, log }) } : {}),
  });
  console.log(`Conclave DS listening on ${ds.url} (store ${storeName})`);
  if (config.devMode) console.log(`Development mode: get a token at ${ds.url}/dev/token?name=Alice`);
  if (demo) console.log(`Demo: open ${ds.url}/ in two tabs (or two browsers) and join the same room`);
  else if (config.devMode) console.log("Demo not built: run `npm run build:demo` (npm start does) to serve it here");

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    sfu.close();
    await ds.close();
    await backplane?.close();
    await store.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? `configuration error: ${e.message}` : e);
  process.exit(1);
});
