/**
 * RFC 9420 §12.4.3.1, the parts of joining by Welcome that need no ratchet tree: find our entry, decrypt
 * GroupSecrets and the GroupInfo, check the GroupInfo signature and confirmation tag, and derive the
 * epoch's secrets. Validating the tree and placing our leaf is the group state machine's job. The sending
 * side (createWelcome) is here too, so both directions share one definition of the encryption.
 */
import { bytesEqual } from "../codec/bytes.js";
import { decode } from "../codec/reader.js";
import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { CryptoError } from "../crypto/errors.js";
import { MlsValidationError } from "./errors.js";
import { interimTranscriptHash, verifyConfirmationTag } from "./framing.js";
import { epochSecretsFromJoiner, deriveWelcomeSecret, welcomeKeyNonce, type EpochSecrets } from "./key-schedule.js";
import {
  PSKType,
  ResumptionPSKUsage,
  decodeGroupInfo,
  decodeGroupSecrets,
  encodeGroupContext,
  encodeGroupInfo,
  encodeGroupInfoTBS,
  encodeGroupSecrets,
  makeKeyPackageRef,
  type GroupInfo,
  type GroupSecrets,
  type KeyPackage,
  type PathSecret,
  type PreSharedKeyID,
  type Welcome,
} from "./messages.js";
import { computePskSecret } from "./psk.js";

const WELCOME_LABEL = "Welcome";

/** The joiner's side of a KeyPackage it published: the package and the private key of its init_key. */
export interface JoinerKeyPackage {
  readonly keyPackage: KeyPackage;
  readonly initPrivateKey: Uint8Array;
}

/** The PSK named by a PreSharedKeyID, or undefined when this client does not hold it. */
export type PskResolver = (id: PreSharedKeyID) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

export interface DecryptedWelcome {
  readonly groupSecrets: GroupSecrets;
  /** psk_secret over GroupSecrets.psks (the all-zero vector when there are none). */
  readonly pskSecret: Uint8Array;
  readonly groupInfo: GroupInfo;
}

/**
 * Decrypts a Welcome addressed to one of our KeyPackages. Errors are MlsValidationError ("wrong-cipher-suite",
 * "not-for-us", "decrypt-failed", "missing-psk", "invalid-psk") or MlsDecodeError for malformed plaintexts.
 */
export async function decryptWelcome(suite: CipherSuite, welcome: Welcome, joiner: JoinerKeyPackage, resolvePsk?: PskResolver): Promise<DecryptedWelcome> {
  if (welcome.cipherSuite !== suite.id || joiner.keyPackage.cipherSuite !== suite.id) {
    throw new MlsValidationError("wrong-cipher-suite", `Welcome suite ${welcome.cipherSuite}, KeyPackage suite ${joiner.keyPackage.cipherSuite}, expected ${suite.id}`);
  }
  const ref = await makeKeyPackageRef(suite, joiner.keyPackage);
  const entry = welcome.secrets.find((s) => bytesEqual(s.newMember, ref));
  if (!entry) throw new MlsValidationError("not-for-us", "no EncryptedGroupSecrets for this KeyPackage");

  const { kemOutput, ciphertext } = entry.encryptedGroupSecrets;
  const secretsBytes = await decrypted(
    () => suite.decryptWithLabel(joiner.initPrivateKey, WELCOME_LABEL, welcome.encryptedGroupInfo, kemOutput, ciphertext),
    "GroupSecrets",
  );
  const groupSecrets = decode(decodeGroupSecrets, secretsBytes);
  const pskSecret = await resolvePskSecret(suite, groupSecrets.psks, resolvePsk);

  const welcomeSecret = await deriveWelcomeSecret(suite, groupSecrets.joinerSecret, pskSecret);
  const { key, nonce } = await welcomeKeyNonce(suite, welcomeSecret);
  const groupInfoBytes = await decrypted(() => suite.aeadOpen(key, nonce, new Uint8Array(0), welcome.encryptedGroupInfo), "GroupInfo");
  const groupInfo = decode(decodeGroupInfo, groupInfoBytes);
  if (groupInfo.groupContext.cipherSuite !== suite.id) {
    throw new MlsValidationError("wrong-cipher-suite", `GroupInfo suite ${groupInfo.groupContext.cipherSuite}, expected ${suite.id}`);
  }
  return { groupSecrets, pskSecret, groupInfo };
}

async function decrypted(open: () => Promise<Uint8Array>, what: string): Promise<Uint8Array> {
  try {
    return await open();
  } catch (e) {
    if (e instanceof CryptoError) throw new MlsValidationError("decrypt-failed", `Welcome ${what} did not decrypt`);
    throw e;
  }
}

async function resolvePskSecret(suite: CipherSuite, ids: readonly PreSharedKeyID[], resolvePsk: PskResolver | undefined): Promise<Uint8Array> {
  const special = ids.filter((id) => id.psktype === PSKType.resumption && id.usage !== ResumptionPSKUsage.application);
  if (special.length > 1) throw new MlsValidationError("invalid-psk", "more than one reinit or branch resumption PSK");
  const psks = [];
  for (const id of ids) {
    const psk = resolvePsk ? await resolvePsk(id) : undefined;
    if (!psk) throw new MlsValidationError("missing-psk", "the Welcome names a PSK this client does not hold");
    psks.push({ id, psk });
  }
  return computePskSecret(suite, psks);
}

/** Throws MlsValidationError "invalid-signature" unless the GroupInfo is signed by `signerPublicKey` (the leaf at `signer`). */
export async function verifyGroupInfoSignature(suite: CipherSuite, groupInfo: GroupInfo, signerPublicKey: Uint8Array): Promise<void> {
  const tbs = encode(encodeGroupInfoTBS, groupInfo);
  let ok: boolean;
  try {
    ok = await suite.verifyWithLabel(signerPublicKey, "GroupInfoTBS", tbs, groupInfo.signature);
  } catch (e) {
    if (!(e instanceof CryptoError)) throw e;
    ok = false;
  }
  if (!ok) throw new MlsValidationError("invalid-signature", `GroupInfo signature of leaf ${groupInfo.signer}`);
}

export interface WelcomeEpoch {
  readonly epochSecrets: EpochSecrets;
  readonly interimTranscriptHash: Uint8Array;
}

/**
 * The joined epoch's secrets from joiner_secret, after checking the GroupInfo's confirmation tag against
 * them (MlsValidationError "invalid-confirmation-tag"), and the interim transcript hash to continue from.
 */
export async function welcomeEpoch(suite: CipherSuite, decrypted: DecryptedWelcome): Promise<WelcomeEpoch> {
  const { groupInfo } = decrypted;
  const context = encode(encodeGroupContext, groupInfo.groupContext);
  const epochSecrets = await epochSecretsFromJoiner(suite, decrypted.groupSecrets.joinerSecret, decrypted.pskSecret, context);
  const confirmed = groupInfo.groupContext.confirmedTranscriptHash;
  await verifyConfirmationTag(suite, epochSecrets.confirmationKey, confirmed, groupInfo.confirmationTag);
  return { epochSecrets, interimTranscriptHash: await interimTranscriptHash(suite, confirmed, groupInfo.confirmationTag) };
}

/** One new member of a Welcome: its KeyPackage and, when the Commit had a path, the path secret it shares. */
export interface WelcomeRecipient {
  readonly keyPackage: KeyPackage;
  readonly pathSecret?: PathSecret;
}

export interface WelcomeInput {
  /** The signed GroupInfo of the new epoch. */
  readonly groupInfo: GroupInfo;
  readonly joinerSecret: Uint8Array;
  /** The PSKs of the Commit, in its order, and their psk_secret. */
  readonly psks: readonly PreSharedKeyID[];
  readonly pskSecret: Uint8Array;
  readonly recipients: readonly WelcomeRecipient[];
}

/** The committer's side: GroupInfo under the welcome key, then GroupSecrets to each new member's init_key. */
export async function createWelcome(suite: CipherSuite, input: WelcomeInput): Promise<Welcome> {
  const welcomeSecret = await deriveWelcomeSecret(suite, input.joinerSecret, input.pskSecret);
  const { key, nonce } = await welcomeKeyNonce(suite, welcomeSecret);
  const encryptedGroupInfo = await suite.aeadSeal(key, nonce, new Uint8Array(0), encode(encodeGroupInfo, input.groupInfo));
  const secrets = await Promise.all(
    input.recipients.map(async (r) => {
      const groupSecrets: GroupSecrets = { joinerSecret: input.joinerSecret, psks: [...input.psks], ...(r.pathSecret ? { pathSecret: r.pathSecret } : {}) };
      const [newMember, encryptedGroupSecrets] = await Promise.all([
        makeKeyPackageRef(suite, r.keyPackage),
        suite.encryptWithLabel(r.keyPackage.initKey, WELCOME_LABEL, encryptedGroupInfo, encode(encodeGroupSecrets, groupSecrets)),
      ]);
      return { newMember, encryptedGroupSecrets };
    }),
  );
  return { cipherSuite: suite.id, secrets, encryptedGroupInfo };
}
