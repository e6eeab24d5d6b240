/**
 * The DS's process configuration from environment variables and command-line flags (flags win). The list
 * of settings and their defaults is documented at the top of main.ts.
 */
import { parseArgs } from "node:util";

export interface DsConfig {
  readonly host: string;
  readonly port: number;
  /** Directory of the SQLite file; ":memory:" keeps nothing. */
  readonly dataDir: string;
  readonly devMode: boolean;
  readonly jwtSecret: string | undefined;
  readonly jwtIssuer: string | undefined;
  readonly jwtAudience: string | undefined;
  readonly name: string;
  readonly leaveGraceMs: number;
  readonly maxPayloadBytes: number;
  readonly eventsPerSecond: number;
  readonly eventBurst: number;
  readonly maxKeyPackagesPerDevice: number;
  readonly corsOrigin: string | undefined;
  /** Bearer token /metrics requires; unset: /metrics answers loopback clients only. */
  readonly metricsToken: string | undefined;
  readonly sqliteSynchronous: "FULL" | "NORMAL";
  /** When set, the store is Redis and the nodes share fan-out through it (several DS nodes). */
  readonly redisUrl: string | undefined;
  /** Namespace of this deployment's keys in Redis. */
  readonly redisPrefix: string;
}

const OPTIONS = {
  host: { type: "string", env: "DS_HOST" },
  port: { type: "string", env: "DS_PORT" },
  "data-dir": { type: "string", env: "DS_DATA_DIR" },
  dev: { type: "boolean", env: "DS_DEV_MODE" },
  "no-dev": { type: "boolean" },
  "jwt-secret": { type: "string", env: "DS_JWT_SECRET" },
  "jwt-issuer": { type: "string", env: "DS_JWT_ISSUER" },
  "jwt-audience": { type: "string", env: "DS_JWT_AUDIENCE" },
  name: { type: "string", env: "DS_NAME" },
  "leave-grace-ms": { type: "string", env: "DS_LEAVE_GRACE_MS" },
  "max-payload-bytes": { type: "string", env: "DS_MAX_PAYLOAD_BYTES" },
  "events-per-second": { type: "string", env: "DS_EVENTS_PER_SECOND" },
  "event-burst": { type: "string", env: "DS_EVENT_BURST" },
  "max-key-packages": { type: "string", env: "DS_MAX_KEY_PACKAGES" },
  "cors-origin": { type: "string", env: "DS_CORS_ORIGIN" },
  "metrics-token": { type: "string", env: "DS_METRICS_TOKEN" },
  "sqlite-sync": { type: "string", env: "DS_SQLITE_SYNC" },
  "redis-url": { type: "string", env: "REDIS_URL" },
  "redis-prefix": { type: "string", env: "DS_REDIS_PREFIX" },
} as const;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

function int(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
  return n;
}

function flag(name: string, raw: string | boolean | undefined): boolean | undefined {
  if (raw === undefined || typeof raw === "boolean") return raw;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name} must be on or off, got "${raw}"`);
}

/** `devDefault`: whether development mode is on when nothing says otherwise (true under `npm start`). */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv, devDefault: boolean): DsConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: Object.fromEntries(Object.entries(OPTIONS).map(([k, o]) => [k, { type: o.type }])),
    strict: true,
    allowPositionals: false,
  });
  const get = (key: keyof typeof OPTIONS): string | boolean | undefined => {
    const v = values[key];
    if (v !== undefined) return v;
    const envName = (OPTIONS[key] as { env?: string }).env;
    return envName ? env[envName] : undefined;
  };
  const str = (key: keyof typeof OPTIONS) => {
    const v = get(key);
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const devMode = values["no-dev"] ? false : (flag("DS_DEV_MODE", get("dev")) ?? (env.NODE_ENV === "production" ? false : devDefault));
  const sync = (str("sqlite-sync") ?? "FULL").toUpperCase();
  if (sync !== "FULL" && sync !== "NORMAL") throw new ConfigError(`DS_SQLITE_SYNC must be FULL or NORMAL, got "${sync}"`);
  const jwtSecret = str("jwt-secret");
  if (jwtSecret !== undefined && Buffer.byteLength(jwtSecret) < 32) throw new ConfigError("DS_JWT_SECRET must be at least 32 bytes");
  if (!devMode && jwtSecret === undefined) throw new ConfigError("DS_JWT_SECRET is required outside development mode");
  const metricsToken = str("metrics-token");
  if (metricsToken !== undefined && (metricsToken.length < 16 || /\s/.test(metricsToken))) throw new ConfigError("DS_METRICS_TOKEN must be at least 16 characters without spaces");
  const redisUrl = str("redis-url");
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw new ConfigError("REDIS_URL must be a redis:// or rediss:// URL");
  return {
    host: str("host") ?? "127.0.0.1",
    port: int("DS_PORT", str("port"), 8787, 0, 65535),
    dataDir: str("data-dir") ?? "data/ds",
    devMode,
    jwtSecret,
    jwtIssuer: str("jwt-issuer"),
    jwtAudience: str("jwt-audience"),
    name: str("name") ?? "conclave-ds",
    leaveGraceMs: int("DS_LEAVE_GRACE_MS", str("leave-grace-ms"), 10_000, 0, 24 * 3600_000),
    maxPayloadBytes: int("DS_MAX_PAYLOAD_BYTES", str("max-payload-bytes"), 1 << 20, 1024, 64 << 20),
    eventsPerSecond: int("DS_EVENTS_PER_SECOND", str("events-per-second"), 50, 1, 1_000_000),
    eventBurst: int("DS_EVENT_BURST", str("event-burst"), 200, 1, 1_000_000),
    maxKeyPackagesPerDevice: int("DS_MAX_KEY_PACKAGES", str("max-key-packages"), 100, 1, 100_000),
    corsOrigin: str("cors-origin") ?? (devMode ? "*" : undefined),
    metricsToken,
    sqliteSynchronous: sync,
    redisUrl,
    redisPrefix: str("redis-prefix") ?? "conclave:",
  };
}
