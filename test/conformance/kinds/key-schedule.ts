import { fromHex } from "../../../keying/codec/bytes.js";
import { encode } from "../../../keying/codec/writer.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { deriveEpochSecrets, externalKeyPair, mlsExporter } from "../../../keying/mls/key-schedule.js";
import { encodeGroupContext, ProtocolVersion } from "../../../keying/mls/messages.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface EpochCase {
  tree_hash: string;
  commit_secret: string;
  psk_secret: string;
  confirmed_transcript_hash: string;
  group_context: string;
  joiner_secret: string;
  welcome_secret: string;
  init_secret: string;
  sender_data_secret: string;
  encryption_secret: string;
  exporter_secret: string;
  epoch_authenticator: string;
  external_secret: string;
  confirmation_key: string;
  membership_key: string;
  resumption_psk: string;
  external_pub: string;
  /** `label` is an ASCII string, not hex. */
  exporter: { label: string; context: string; length: number; secret: string };
}

interface KeyScheduleCase {
  cipher_suite: number;
  group_id: string;
  initial_init_secret: string;
  epochs: EpochCase[];
}

/** §8: the key schedule over successive epochs, each epoch's init_secret feeding the next. */
const kind: VectorKind = {
  kind: "key-schedule",
  usesProvider: true,
  matches: (f) => f.name === "key-schedule.json",
  run: (f, provider) =>
    eachCase(f.json as KeyScheduleCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      let initSecret = fromHex(c.initial_init_secret);
      for (const [epoch, e] of c.epochs.entries()) {
        const at = (field: string): string => `epoch ${epoch} ${field}`;
        const groupContext = encode(encodeGroupContext, {
          version: ProtocolVersion.mls10,
          cipherSuite: c.cipher_suite,
          groupId: fromHex(c.group_id),
          epoch: BigInt(epoch),
          treeHash: fromHex(e.tree_hash),
          confirmedTranscriptHash: fromHex(e.confirmed_transcript_hash),
          extensions: [],
        });
        expectBytes(at("group_context"), groupContext, e.group_context);
        const s = await deriveEpochSecrets(suite, {
          initSecret,
          commitSecret: fromHex(e.commit_secret),
          pskSecret: fromHex(e.psk_secret),
          groupContext,
        });
        expectBytes(at("joiner_secret"), s.joinerSecret, e.joiner_secret);
        expectBytes(at("welcome_secret"), s.welcomeSecret, e.welcome_secret);
        expectBytes(at("init_secret"), s.initSecret, e.init_secret);
        expectBytes(at("sender_data_secret"), s.senderDataSecret, e.sender_data_secret);
        expectBytes(at("encryption_secret"), s.encryptionSecret, e.encryption_secret);
        expectBytes(at("exporter_secret"), s.exporterSecret, e.exporter_secret);
        expectBytes(at("epoch_authenticator"), s.epochAuthenticator, e.epoch_authenticator);
        expectBytes(at("external_secret"), s.externalSecret, e.external_secret);
        expectBytes(at("confirmation_key"), s.confirmationKey, e.confirmation_key);
        expectBytes(at("membership_key"), s.membershipKey, e.membership_key);
        expectBytes(at("resumption_psk"), s.resumptionPsk, e.resumption_psk);
        expectBytes(at("external_pub"), (await externalKeyPair(suite, s.externalSecret)).publicKey, e.external_pub);
        const exported = await mlsExporter(suite, s.exporterSecret, e.exporter.label, fromHex(e.exporter.context), e.exporter.length);
        expectBytes(at("exporter.secret"), exported, e.exporter.secret);
        initSecret = s.initSecret;
      }
    }),
};

export default kind;
