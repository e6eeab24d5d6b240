/**
 * The passive-client scenario vectors (test-vectors.md, "Passive Client Scenarios"): a client joins from a
 * Welcome with a KeyPackage whose private keys the vector gives, then follows the group commit by commit,
 * and must compute the same epoch_authenticator at every epoch. Shared by the passive-client-welcome,
 * passive-client-handling-commit and interop-passive kinds, which differ only in which files they claim.
 */
import { bytesEqual, concatBytes, fromHex, toHex } from "../../keying/codec/bytes.js";
import { decode } from "../../keying/codec/reader.js";
import { getCipherSuite, type CipherSuite, type CipherSuiteId, type CryptoProvider } from "../../keying/crypto/index.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { WireFormat, decodeMLSMessage, type KeyPackage, type Welcome } from "../../keying/mls/messages.js";
import { eachCase, expectBytes, type VectorFile, type VectorKind } from "./kind.js";

export interface PassiveEpoch {
  /** MLSMessages (PublicMessage or PrivateMessage) carrying proposals the commit may include by reference. */
  readonly proposals: readonly Uint8Array[];
  readonly commit: Uint8Array;
  readonly epochAuthenticator: Uint8Array;
}

export interface PassiveClientCase {
  readonly cipherSuite: number;
  readonly externalPsks: readonly { readonly pskId: Uint8Array; readonly psk: Uint8Array }[];
  readonly keyPackage: KeyPackage;
  readonly signaturePriv: Uint8Array;
  readonly encryptionPriv: Uint8Array;
  readonly initPriv: Uint8Array;
  readonly welcome: Welcome;
  /** Encoded `optional<Node> ratchet_tree<V>`, absent when the Welcome's GroupInfo carries the tree. */
  readonly ratchetTree?: Uint8Array;
  readonly initialEpochAuthenticator: Uint8Array;
  readonly epochs: readonly PassiveEpoch[];
}

const FIELDS = ["cipher_suite", "key_package", "signature_priv", "encryption_priv", "init_priv", "welcome", "initial_epoch_authenticator", "epochs"] as const;

/** A file of passive-client cases: a non-empty array whose entries carry every field of the format. */
export function isPassiveClientFile(json: unknown): boolean {
  return Array.isArray(json) && json.length > 0 && json.every((c) => typeof c === "object" && c !== null && FIELDS.every((f) => f in c));
}

function hexField(obj: Record<string, unknown>, field: string): Uint8Array {
  const v = obj[field];
  if (typeof v !== "string") throw new Error(`${field} is not a hex string`);
  return fromHex(v);
}

/** Decodes one case; the KeyPackage and Welcome are MLSMessages and must be of those wire formats. */
export function parsePassiveClientCase(raw: unknown): PassiveClientCase {
  if (typeof raw !== "object" || raw === null) throw new Error("case is not an object");
  const c = raw as Record<string, unknown>;
  if (typeof c["cipher_suite"] !== "number") throw new Error("cipher_suite is not a number");
  const kp = decode(decodeMLSMessage, hexField(c, "key_package"));
  if (kp.wireFormat !== WireFormat.mlsKeyPackage) throw new Error("key_package is not an MLSMessage(KeyPackage)");
  const welcome = decode(decodeMLSMessage, hexField(c, "welcome"));
  if (welcome.wireFormat !== WireFormat.mlsWelcome) throw new Error("welcome is not an MLSMessage(Welcome)");
  const psks = c["external_psks"] ?? [];
  if (!Array.isArray(psks)) throw new Error("external_psks is not a list");
  const epochs = c["epochs"];
  if (!Array.isArray(epochs)) throw new Error("epochs is not a list");
  return {
    cipherSuite: c["cipher_suite"],
    externalPsks: psks.map((p: Record<string, unknown>) => ({ pskId: hexField(p, "psk_id"), psk: hexField(p, "psk") })),
    keyPackage: kp.keyPackage,
    signaturePriv: hexField(c, "signature_priv"),
    encryptionPriv: hexField(c, "encryption_priv"),
    initPriv: hexField(c, "init_priv"),
    welcome: welcome.welcome,
    ...(c["ratchet_tree"] === null || c["ratchet_tree"] === undefined ? {} : { ratchetTree: hexField(c, "ratchet_tree") }),
    initialEpochAuthenticator: hexField(c, "initial_epoch_authenticator"),
    epochs: epochs.map((e: Record<string, unknown>, i) => {
      const proposals = e["proposals"] ?? [];
      if (!Array.isArray(proposals) || !proposals.every((p) => typeof p === "string")) throw new Error(`epochs[${i}].proposals is not a list of hex strings`);
      return { proposals: proposals.map((p: string) => fromHex(p)), commit: hexField(e, "commit"), epochAuthenticator: hexField(e, "epoch_authenticator") };
    }),
  };
}

const EC_SCALAR_BYTES: Partial<Record<string, number>> = { "DHKEM-P256": 32, "DHKEM-P384": 48, "DHKEM-P521": 66 };

/**
 * Some vectors' P-521 private keys lost their leading zero byte (65 bytes); RFC 9180 SerializePrivateKey is
 * fixed-length, so restore it (a big-endian scalar keeps its value when left-padded).
 */
function withFullLengthScalars(suite: CipherSuite, c: PassiveClientCase): PassiveClientCase {
  const n = EC_SCALAR_BYTES[suite.params.kem];
  if (n === undefined) return c;
  const pad = (k: Uint8Array): Uint8Array => (k.length >= n ? k : concatBytes(new Uint8Array(n - k.length), k));
  return { ...c, initPriv: pad(c.initPriv), encryptionPriv: pad(c.encryptionPriv) };
}

/**
 * The vector's private keys belong to its KeyPackage: the signature key by deriving the public key, the two
 * HPKE keys by opening what was sealed to the published public key (no provider exposes HPKE private-to-public).
 */
export async function checkKeyPackagePrivateKeys(suite: CipherSuite, c: PassiveClientCase): Promise<void> {
  const leaf = c.keyPackage.leafNode;
  const sigPub = await suite.primitives.signaturePublicKey(c.signaturePriv);
  if (!bytesEqual(sigPub, leaf.signatureKey)) throw new Error("signature_priv does not match the KeyPackage's signature_key");
  await checkHpkePair(suite, c.initPriv, c.keyPackage.initKey, "init_priv");
  await checkHpkePair(suite, c.encryptionPriv, leaf.encryptionKey, "encryption_priv");
}

async function checkHpkePair(suite: CipherSuite, priv: Uint8Array, pub: Uint8Array, field: string): Promise<void> {
  const probe = suite.randomBytes(16);
  const sealed = await suite.encryptWithLabel(pub, "passive client key check", new Uint8Array(0), probe);
  let opened: Uint8Array;
  try {
    opened = await suite.decryptWithLabel(priv, "passive client key check", new Uint8Array(0), sealed.kemOutput, sealed.ciphertext);
  } catch {
    throw new Error(`${field} does not match the KeyPackage`);
  }
  if (!bytesEqual(opened, probe)) throw new Error(`${field} does not match the KeyPackage`);
}

/**
 * Joins from the Welcome (with the vector's tree and PSKs) and follows every epoch: each proposal message is
 * processed, then the commit, and the epoch_authenticator must match after the join and after every commit.
 */
export async function followPassiveClientCase(raw: PassiveClientCase, provider: CryptoProvider): Promise<void> {
  const suite = await getCipherSuite(raw.cipherSuite as CipherSuiteId, provider);
  const c = withFullLengthScalars(suite, raw);
  await checkKeyPackagePrivateKeys(suite, c);
  const group = await MlsGroup.joinFromWelcome({
    welcome: c.welcome,
    keyPackage: { keyPackage: c.keyPackage, initPrivateKey: c.initPriv, encryptionPrivateKey: c.encryptionPriv, signaturePrivateKey: c.signaturePriv },
    ...(c.ratchetTree ? { ratchetTree: c.ratchetTree } : {}),
    externalPsks: c.externalPsks,
    provider,
    // The vectors were generated long ago: their leaves' lifetimes say nothing about today.
    policy: { checkReceivedLifetimes: false },
  });
  expectBytes("initial_epoch_authenticator", group.epochAuthenticator, toHex(c.initialEpochAuthenticator));
  for (const [i, epoch] of c.epochs.entries()) {
    for (const [j, proposal] of epoch.proposals.entries()) {
      const r = await group.processMessage(proposal).catch((e: unknown) => {
        throw new Error(`epochs[${i}].proposals[${j}]: ${e instanceof Error ? e.message : String(e)}`);
      });
      if (r.kind !== "proposal") throw new Error(`epochs[${i}].proposals[${j}] is a ${r.kind}, not a proposal`);
    }
    const r = await group.processMessage(epoch.commit).catch((e: unknown) => {
      throw new Error(`epochs[${i}].commit: ${e instanceof Error ? e.message : String(e)}`);
    });
    if (r.kind !== "commit") throw new Error(`epochs[${i}].commit is a ${r.kind}, not a commit`);
    expectBytes(`epochs[${i}].epoch_authenticator`, group.epochAuthenticator, toHex(epoch.epochAuthenticator));
  }
}

/** A conformance kind running every case of the files `matches` claims. */
export function passiveClientKind(kind: string, matches: (f: VectorFile) => boolean): VectorKind {
  return {
    kind,
    usesProvider: true,
    matches: (f) => matches(f) && isPassiveClientFile(f.json),
    run: (f, provider) => eachCase(f.json as unknown[], (raw) => followPassiveClientCase(parsePassiveClientCase(raw), provider)),
  };
}
