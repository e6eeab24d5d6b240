/**
 * Provider identity: a domain ("a.example") and an Ed25519 signature key. Users carry their provider in
 * their id ("alice@a.example"), rooms may carry the provider hosting them ("standup@a.example").
 *
 * Link authentication is a challenge-response in both directions over one transcript: the initiator
 * sends a fresh nonce with its connection, the acceptor answers with its own nonce and a signature over
 * both, the initiator proves itself with a signature over the same nonces. Each side verifies the other
 * against the public key configured for that domain, so a signature proves possession of the key for
 * exactly this connection (the role and both domains are in the signed text: no reflection, no relay to
 * another provider).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { utf8 } from "../../keying/codec/bytes.js";

/** Lower-case DNS name: labels of letters, digits and inner hyphens. */
const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const NONCE = /^[A-Za-z0-9_-]{43}$/;
const ED25519_PUBLIC = /^[A-Za-z0-9_-]{43}$/;

export function isDomain(s: unknown): s is string {
  return typeof s === "string" && DOMAIN.test(s);
}

export function isNonce(s: unknown): s is string {
  return typeof s === "string" && NONCE.test(s);
}

/** The provider in a user id ("alice@a.example" -> "a.example"); undefined for ids without one. */
export function providerOfUser(user: string): string | undefined {
  const at = user.lastIndexOf("@");
  if (at <= 0) return undefined;
  const domain = user.slice(at + 1);
  return isDomain(domain) ? domain : undefined;
}

/** The provider a room names after its last "@" ("standup@a.example"), if any. */
export const providerOfRoom = providerOfUser;

export interface ProviderKey {
  readonly privateKey: KeyObject;
  /** The raw 32-byte Ed25519 public key, base64url: what peers configure for this provider. */
  readonly publicKey: string;
}

export function generateProviderKey(): ProviderKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** A private key from PEM (PKCS#8) or from its base64url PKCS#8 DER. */
export function loadProviderKey(text: string): ProviderKey {
  const trimmed = text.trim();
  const privateKey = trimmed.startsWith("-----") ? createPrivateKey(trimmed) : createPrivateKey({ key: Buffer.from(trimmed, "base64url"), format: "der", type: "pkcs8" });
  if (privateKey.asymmetricKeyType !== "ed25519") throw new Error("the provider key must be an Ed25519 private key");
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** The key as base64url PKCS#8 DER (what loadProviderKey reads back). */
export function exportProviderKey(key: ProviderKey): string {
  return key.privateKey.export({ format: "der", type: "pkcs8" }).toString("base64url");
}

function publicKeyOf(privateKey: KeyObject): string {
  const x = createPublicKey(privateKey).export({ format: "jwk" }).x;
  if (typeof x !== "string") throw new Error("not an Ed25519 key");
  return x;
}

export function importPublicKey(publicKey: string): KeyObject {
  if (!ED25519_PUBLIC.test(publicKey)) throw new Error("a provider public key is 32 bytes, base64url");
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: publicKey }, format: "jwk" });
}

export function freshNonce(): string {
  return randomBytes(32).toString("base64url");
}

export type LinkRole = "initiator" | "acceptor";

export interface LinkTranscript {
  readonly initiator: string;
  readonly acceptor: string;
  readonly initiatorNonce: string;
  readonly acceptorNonce: string;
}

function transcript(role: LinkRole, t: LinkTranscript): Uint8Array {
  // Domains and nonces are validated to contain no newline, so the text is unambiguous.
  return utf8(["conclave-federation-link/1", role, t.initiator, t.acceptor, t.initiatorNonce, t.acceptorNonce].join("\n"));
}

export function signTranscript(key: KeyObject, role: LinkRole, t: LinkTranscript): string {
  return sign(null, transcript(role, t), key).toString("base64url");
}

export function verifyTranscript(key: KeyObject, role: LinkRole, t: LinkTranscript, signature: unknown): boolean {
  if (typeof signature !== "string" || signature.length > 128) return false;
  const sig = Buffer.from(signature, "base64url");
  return sig.length === 64 && verify(null, transcript(role, t), key, sig);
}
