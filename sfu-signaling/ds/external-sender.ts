/**
 * The DS as an MLS external sender (RFC 9420 §12.1.8.1): one signature key per signature scheme, generated
 * once and kept in the Store, so a restarted DS (or every node of a cluster) signs as the same sender that
 * groups listed in their external_senders extension.
 */
import { utf8 } from "../../keying/codec/bytes.js";
import { encode } from "../../keying/codec/writer.js";
import { SUITES, getCipherSuite, type CipherSuite, type CipherSuiteId, type CryptoProvider } from "../../keying/crypto/index.js";
import { createExternalProposal, externalSenderOf } from "../../keying/mls/external.js";
import type { SigningIdentity } from "../../keying/mls/key-package.js";
import { CredentialType, ProposalType, encodeExternalSender, type ExternalSender } from "../../keying/mls/messages.js";
import type { Store } from "../store/store.js";

export interface ExternalSenderIdentity {
  readonly suite: CipherSuite;
  readonly provider: CryptoProvider;
  readonly identity: SigningIdentity;
  readonly sender: ExternalSender;
  /** `sender` encoded as an ExternalSender struct: what a creator puts in its external_senders list. */
  readonly encoded: Uint8Array;
}

export class ExternalSenderKeys {
  private readonly identities = new Map<CipherSuiteId, Promise<ExternalSenderIdentity>>();

  constructor(
    private readonly store: Store,
    private readonly provider: CryptoProvider,
    /** The identity in the DS's basic credential, e.g. "ds@example.com". */
    private readonly name: string,
  ) {}

  forSuite(id: CipherSuiteId): Promise<ExternalSenderIdentity> {
    let identity = this.identities.get(id);
    if (!identity) {
      identity = this.load(id);
      this.identities.set(id, identity);
      identity.catch(() => this.identities.delete(id));
    }
    return identity;
  }

  private async load(id: CipherSuiteId): Promise<ExternalSenderIdentity> {
    const suite = await getCipherSuite(id, this.provider);
    const candidate = await suite.primitives.signatureGenerateKeyPair();
    // Suites sharing a signature scheme share the key: the credential names the DS, not the suite.
    const signaturePrivateKey = await this.store.ensureSecret(`external-sender/${SUITES[id].signature}`, candidate.privateKey);
    const identity: SigningIdentity = {
      credential: { credentialType: CredentialType.basic, identity: utf8(this.name) },
      signaturePublicKey: await suite.primitives.signaturePublicKey(signaturePrivateKey),
      signaturePrivateKey,
    };
    const sender = externalSenderOf(identity);
    return { suite, provider: this.provider, identity, sender, encoded: encode(encodeExternalSender, sender) };
  }
}

/** The DS's Remove proposal for `removed` in the given epoch, as an MLSMessage (PublicMessage). */
export function signRemoveProposal(sender: ExternalSenderIdentity, groupId: Uint8Array, epoch: bigint, senderIndex: number, removed: number): Promise<Uint8Array> {
  return createExternalProposal(sender.suite, {
    groupId,
    epoch,
    senderIndex,
    signaturePrivateKey: sender.identity.signaturePrivateKey,
    proposal: { proposalType: ProposalType.remove, remove: { removed } },
  });
}
