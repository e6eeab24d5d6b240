import { utf8 } from "../codec/bytes.js";
import type { CipherSuite, KeyPair } from "../crypto/cipher-suite.js";

/**
 * RFC 9420 §8: the secrets of one epoch, named as in the RFC's "Epoch-Derived Secrets" table. The
 * epoch_secret itself is not kept: everything an epoch needs is derived from it at once (§9.2 deletion).
 */
export interface EpochSecrets {
  readonly joinerSecret: Uint8Array;
  readonly welcomeSecret: Uint8Array;
  readonly senderDataSecret: Uint8Array;
  readonly encryptionSecret: Uint8Array;
  readonly exporterSecret: Uint8Array;
  readonly externalSecret: Uint8Array;
  readonly confirmationKey: Uint8Array;
  readonly membershipKey: Uint8Array;
  readonly resumptionPsk: Uint8Array;
  readonly epochAuthenticator: Uint8Array;
  /** init_secret_[n], the input to the next epoch's key schedule. */
  readonly initSecret: Uint8Array;
}

export interface KeyScheduleInput {
  /** init_secret_[n-1]: the previous epoch's, a fresh random value at group creation, or from external init. */
  readonly initSecret: Uint8Array;
  /** The commit secret, or the all-zero vector when the Commit has no path. */
  readonly commitSecret: Uint8Array;
  /** psk_secret (§8.4); omitted means no PSKs, i.e. the all-zero vector. */
  readonly pskSecret?: Uint8Array;
  /** The encoded GroupContext_[n] of the new epoch. */
  readonly groupContext: Uint8Array;
}

/** The all-zero vector of length KDF.Nh written `0` in the RFC's diagrams. */
export function zeroSecret(suite: CipherSuite): Uint8Array {
  return new Uint8Array(suite.params.Nh);
}

/** joiner_secret = ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GroupContext, Nh). */
export async function deriveJoinerSecret(suite: CipherSuite, initSecret: Uint8Array, commitSecret: Uint8Array, groupContext: Uint8Array): Promise<Uint8Array> {
  const prk = await suite.extract(initSecret, commitSecret);
  return suite.expandWithLabel(prk, "joiner", groupContext, suite.params.Nh);
}

/** The key schedule from init_secret_[n-1] to every secret of epoch n. */
export async function deriveEpochSecrets(suite: CipherSuite, input: KeyScheduleInput): Promise<EpochSecrets> {
  const joinerSecret = await deriveJoinerSecret(suite, input.initSecret, input.commitSecret, input.groupContext);
  return epochSecretsFromJoiner(suite, joinerSecret, input.pskSecret, input.groupContext);
}

/**
 * The key schedule from joiner_secret on: what a new member runs after decrypting GroupSecrets
 * (§12.4.3.1), and the second half of every epoch change.
 */
export async function epochSecretsFromJoiner(
  suite: CipherSuite,
  joinerSecret: Uint8Array,
  pskSecret: Uint8Array | undefined,
  groupContext: Uint8Array,
): Promise<EpochSecrets> {
  const member = await memberSecret(suite, joinerSecret, pskSecret);
  const welcomeSecret = await suite.deriveSecret(member, "welcome");
  const epochSecret = await suite.expandWithLabel(member, "epoch", groupContext, suite.params.Nh);
  const [senderDataSecret, encryptionSecret, exporterSecret, externalSecret, confirmationKey, membershipKey, resumptionPsk, epochAuthenticator, initSecret] =
    await Promise.all(
      ["sender data", "encryption", "exporter", "external", "confirm", "membership", "resumption", "authentication", "init"].map((label) =>
        suite.deriveSecret(epochSecret, label),
      ),
    );
  return {
    joinerSecret,
    welcomeSecret,
    senderDataSecret: senderDataSecret!,
    encryptionSecret: encryptionSecret!,
    exporterSecret: exporterSecret!,
    externalSecret: externalSecret!,
    confirmationKey: confirmationKey!,
    membershipKey: membershipKey!,
    resumptionPsk: resumptionPsk!,
    epochAuthenticator: epochAuthenticator!,
    initSecret: initSecret!,
  };
}

/** The unnamed KDF.Extract(joiner_secret, psk_secret) that both welcome_secret and epoch_secret come from. */
function memberSecret(suite: CipherSuite, joinerSecret: Uint8Array, pskSecret: Uint8Array | undefined): Promise<Uint8Array> {
  return suite.extract(joinerSecret, pskSecret ?? zeroSecret(suite));
}

/** welcome_secret = DeriveSecret(Extract(joiner_secret, psk_secret), "welcome"): needs no GroupContext. */
export async function deriveWelcomeSecret(suite: CipherSuite, joinerSecret: Uint8Array, pskSecret?: Uint8Array): Promise<Uint8Array> {
  return suite.deriveSecret(await memberSecret(suite, joinerSecret, pskSecret), "welcome");
}

export interface AeadKeyNonce {
  readonly key: Uint8Array;
  readonly nonce: Uint8Array;
}

/** §12.4.3.1: the key and nonce that encrypt a Welcome's GroupInfo. */
export async function welcomeKeyNonce(suite: CipherSuite, welcomeSecret: Uint8Array): Promise<AeadKeyNonce> {
  const empty = new Uint8Array(0);
  const [key, nonce] = await Promise.all([
    suite.expandWithLabel(welcomeSecret, "key", empty, suite.params.Nk),
    suite.expandWithLabel(welcomeSecret, "nonce", empty, suite.params.Nn),
  ]);
  return { key, nonce };
}

/** §8.5 MLS-Exporter(Label, Context, Length). */
export async function mlsExporter(suite: CipherSuite, exporterSecret: Uint8Array, label: string, context: Uint8Array, length: number): Promise<Uint8Array> {
  const [labelSecret, contextHash] = await Promise.all([suite.deriveSecret(exporterSecret, label), suite.hash(context)]);
  return suite.expandWithLabel(labelSecret, "exported", contextHash, length);
}

/** §8: external_priv, external_pub = KEM.DeriveKeyPair(external_secret). */
export function externalKeyPair(suite: CipherSuite, externalSecret: Uint8Array): Promise<KeyPair> {
  return suite.deriveKeyPair(externalSecret);
}

const EXTERNAL_INIT_LABEL = utf8("MLS 1.0 external init secret");

/** §8.3, joiner side: a fresh init_secret and the kem_output that carries it in an ExternalInit proposal. */
export async function externalInitSender(suite: CipherSuite, externalPub: Uint8Array): Promise<{ kemOutput: Uint8Array; initSecret: Uint8Array }> {
  const { kemOutput, secret } = await suite.primitives.hpkeExportSender(externalPub, new Uint8Array(0), EXTERNAL_INIT_LABEL, suite.params.Nh);
  return { kemOutput, initSecret: secret };
}

/** §8.3, member side: the init_secret from an ExternalInit proposal's kem_output. */
export function externalInitReceiver(suite: CipherSuite, externalPriv: Uint8Array, kemOutput: Uint8Array): Promise<Uint8Array> {
  return suite.primitives.hpkeExportReceiver(externalPriv, kemOutput, new Uint8Array(0), EXTERNAL_INIT_LABEL, suite.params.Nh);
}
