/**
 * RFC 9420 §10: KeyPackages — generating them (with the private keys a client keeps) and validating
 * received ones against a group (§10.1). Also the signing identity every member and joiner carries.
 */
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { SUITE_IDS } from "../crypto/suites.js";
import { bytesEqual } from "../codec/bytes.js";
import { MlsValidationError } from "./errors.js";
import { checkUniqueExtensions, validateLeafNode, type LeafValidationContext } from "./leaf-validation.js";
import { MemberIndex } from "./member-index.js";
import { resolvePolicy } from "./policy.js";
import { signLeafNode } from "./leaf-node.js";
import {
  CredentialType,
  ExtensionType,
  LeafNodeSource,
  ProtocolVersion,
  encodeKeyPackageTBS,
  type Capabilities,
  type Credential,
  type Extension,
  type KeyPackage,
  type Lifetime,
} from "./messages.js";

/** A member's long-term identity in a group: its credential and the signature key pair it vouches for. */
export interface SigningIdentity {
  readonly credential: Credential;
  readonly signaturePublicKey: Uint8Array;
  readonly signaturePrivateKey: Uint8Array;
}

/** A fresh signature key pair under a basic credential (`identity` as given, e.g. "user/device"). */
export async function generateSigningIdentity(suite: CipherSuite, identity: Uint8Array | Credential): Promise<SigningIdentity> {
  const credential: Credential = identity instanceof Uint8Array ? { credentialType: CredentialType.basic, identity } : identity;
  const kp = await suite.primitives.signatureGenerateKeyPair();
  return { credential, signaturePublicKey: kp.publicKey, signaturePrivateKey: kp.privateKey };
}

/** What a client advertises (§7.2): this implementation's real abilities, no GREASE (callers may add some). */
export function defaultCapabilities(extra: Partial<Capabilities> = {}): Capabilities {
  return {
    versions: extra.versions ?? [ProtocolVersion.mls10],
    cipherSuites: extra.cipherSuites ?? [...SUITE_IDS],
    extensions: extra.extensions ?? [],
    proposals: extra.proposals ?? [],
    credentials: extra.credentials ?? [CredentialType.basic],
  };
}

/** The parts of a LeafNode its owner chooses (the rest is keys, source and signature). */
export interface LeafNodeOptions {
  readonly capabilities?: Capabilities;
  readonly extensions?: Extension[];
}

export interface KeyPackageOptions extends LeafNodeOptions {
  /** Default: from one hour ago (clock skew) to 90 days ahead. */
  readonly lifetime?: Lifetime;
  readonly keyPackageExtensions?: Extension[];
  /** Mark as a last-resort KeyPackage (draft-ietf-mls-extensions), which the DS may hand out more than once. */
  readonly lastResort?: boolean;
  /** Seconds since the Unix epoch; default the system clock. */
  readonly now?: bigint;
}

/** A published KeyPackage and the private keys its owner needs to join with it. */
export interface KeyPackageBundle {
  readonly keyPackage: KeyPackage;
  readonly initPrivateKey: Uint8Array;
  readonly encryptionPrivateKey: Uint8Array;
  readonly signaturePrivateKey: Uint8Array;
}

const DAY = 24n * 3600n;

export async function generateKeyPackage(suite: CipherSuite, identity: SigningIdentity, options: KeyPackageOptions = {}): Promise<KeyPackageBundle> {
  const now = options.now ?? BigInt(Math.floor(Date.now() / 1000));
  const lifetime = options.lifetime ?? { notBefore: now - 3600n, notAfter: now + 90n * DAY };
  const kpExtensions = [...(options.keyPackageExtensions ?? [])];
  let capabilities = options.capabilities ?? defaultCapabilities();
  if (options.lastResort) {
    if (!kpExtensions.some((e) => e.extensionType === ExtensionType.lastResort)) kpExtensions.push({ extensionType: ExtensionType.lastResort, extensionData: new Uint8Array(0) });
    // §10: extensions a KeyPackage carries are listed in its leaf's capabilities.
    if (!capabilities.extensions.includes(ExtensionType.lastResort)) capabilities = { ...capabilities, extensions: [...capabilities.extensions, ExtensionType.lastResort] };
  }
  checkUniqueExtensions(kpExtensions, "KeyPackage");
  const [initKey, encryptionKey] = await Promise.all([suite.primitives.hpkeGenerateKeyPair(), suite.primitives.hpkeGenerateKeyPair()]);
  const leafNode = await signLeafNode(
    suite,
    {
      encryptionKey: encryptionKey.publicKey,
      signatureKey: identity.signaturePublicKey,
      credential: identity.credential,
      capabilities,
      leafNodeSource: LeafNodeSource.keyPackage,
      lifetime,
      extensions: options.extensions ?? [],
    },
    identity.signaturePrivateKey,
  );
  const tbs = { version: ProtocolVersion.mls10, cipherSuite: suite.id, initKey: initKey.publicKey, leafNode, extensions: kpExtensions };
  const signature = await suite.signWithLabel(identity.signaturePrivateKey, "KeyPackageTBS", encode(encodeKeyPackageTBS, tbs));
  return {
    keyPackage: { ...tbs, signature },
    initPrivateKey: initKey.privateKey,
    encryptionPrivateKey: encryptionKey.privateKey,
    signaturePrivateKey: identity.signaturePrivateKey,
  };
}

export function isLastResort(keyPackage: KeyPackage): boolean {
  return keyPackage.extensions.some((e) => e.extensionType === ExtensionType.lastResort);
}

/** Whether the KeyPackage signature verifies under its leaf's signature key. */
export async function verifyKeyPackageSignature(suite: CipherSuite, keyPackage: KeyPackage): Promise<boolean> {
  return suite
    .verifyWithLabel(keyPackage.leafNode.signatureKey, "KeyPackageTBS", encode(encodeKeyPackageTBS, keyPackage), keyPackage.signature)
    .catch(() => false);
}

/**
 * §10.1 against a group: version and suite, the leaf as a key_package leaf (§7.3, including the group's
 * required capabilities and key uniqueness), the package signature, and init_key != encryption_key.
 * `received` is false for a KeyPackage this client is about to add itself (its lifetime is then always checked).
 */
export async function validateKeyPackage(ctx: LeafValidationContext, keyPackage: KeyPackage, received: boolean): Promise<void> {
  if (keyPackage.version !== ProtocolVersion.mls10) throw new MlsValidationError("wrong-version", `KeyPackage version ${keyPackage.version}`);
  if (keyPackage.cipherSuite !== ctx.suite.id) throw new MlsValidationError("wrong-cipher-suite", `KeyPackage suite ${keyPackage.cipherSuite}, group suite ${ctx.suite.id}`);
  if (bytesEqual(keyPackage.initKey, keyPackage.leafNode.encryptionKey)) throw new MlsValidationError("invalid-key-package", "init_key equals the leaf's encryption_key");
  checkUniqueExtensions(keyPackage.extensions, "KeyPackage");
  const [signed] = await Promise.all([verifyKeyPackageSignature(ctx.suite, keyPackage), validateLeafNode(ctx, keyPackage.leafNode, { source: LeafNodeSource.keyPackage, received })]);
  if (!signed) throw new MlsValidationError("invalid-signature", "KeyPackage signature does not verify");
}

/**
 * The checks of §10.1 that need no group: version, suite, signatures of package and leaf, source,
 * init_key != encryption_key, extensions listed once and leaf extensions listed in the capabilities, and the
 * lifetime against `now`. What the DS runs before storing a KeyPackage.
 */
export async function verifyKeyPackage(suite: CipherSuite, keyPackage: KeyPackage, now: bigint = BigInt(Math.floor(Date.now() / 1000))): Promise<void> {
  const ctx: LeafValidationContext = {
    suite,
    policy: resolvePolicy({ now: () => now }),
    groupId: new Uint8Array(0),
    extensions: [],
    index: new MemberIndex(),
  };
  await validateKeyPackage(ctx, keyPackage, false);
}
