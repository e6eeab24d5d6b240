/**
 * Federation settings from the environment (for main.ts):
 *
 *   DS_FEDERATION_DOMAIN       this provider's domain, e.g. a.example; unset: no federation
 *   DS_FEDERATION_KEY          its Ed25519 private key: PEM, or base64url PKCS#8 DER (or DS_FEDERATION_KEY_FILE)
 *   DS_FEDERATION_PEERS        the trusted providers, JSON: [{ "domain", "url", "publicKey" }] (or DS_FEDERATION_PEERS_FILE)
 *   DS_PUBLIC_URL              where users of other providers reach this DS (put in hub tokens); optional
 *
 * `npx tsx sfu-signaling/federation/config.ts keygen` prints a new key and the public key peers configure.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { FederationConfigError, type FederationConfig } from "./index.js";
import { exportProviderKey, generateProviderKey, loadProviderKey } from "./identity.js";
import type { TrustedPeer } from "./link.js";

export function federationConfigFromEnv(env: NodeJS.ProcessEnv, readFile: (path: string) => string = (p) => readFileSync(p, "utf8")): Omit<FederationConfig, "log"> | undefined {
  const domain = env.DS_FEDERATION_DOMAIN;
  if (domain === undefined || domain === "") return undefined;
  const keyText = env.DS_FEDERATION_KEY ?? (env.DS_FEDERATION_KEY_FILE ? readFile(env.DS_FEDERATION_KEY_FILE) : undefined);
  if (!keyText) throw new FederationConfigError("DS_FEDERATION_KEY (or DS_FEDERATION_KEY_FILE) is required with DS_FEDERATION_DOMAIN");
  let key;
  try {
    key = loadProviderKey(keyText);
  } catch (e) {
    throw new FederationConfigError(`DS_FEDERATION_KEY: ${(e as Error).message}`);
  }
  const peersText = env.DS_FEDERATION_PEERS ?? (env.DS_FEDERATION_PEERS_FILE ? readFile(env.DS_FEDERATION_PEERS_FILE) : "[]");
  let list: unknown;
  try {
    list = JSON.parse(peersText);
  } catch {
    throw new FederationConfigError("DS_FEDERATION_PEERS must be a JSON list");
  }
  if (!Array.isArray(list)) throw new FederationConfigError("DS_FEDERATION_PEERS must be a JSON list");
  const peers: TrustedPeer[] = list.map((p: unknown, i) => {
    const o = typeof p === "object" && p !== null ? (p as Record<string, unknown>) : {};
    if (typeof o.domain !== "string" || typeof o.url !== "string" || typeof o.publicKey !== "string") {
      throw new FederationConfigError(`DS_FEDERATION_PEERS[${i}] needs domain, url and publicKey (strings)`);
    }
    return { domain: o.domain, url: o.url, publicKey: o.publicKey };
  });
  return { domain, key, peers, ...(env.DS_PUBLIC_URL ? { publicUrl: env.DS_PUBLIC_URL } : {}) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href && process.argv[2] === "keygen") {
  const key = generateProviderKey();
  console.log(`DS_FEDERATION_KEY=${exportProviderKey(key)}`);
  console.log(`publicKey (for the peers' DS_FEDERATION_PEERS): ${key.publicKey}`);
}
