import { beforeAll, describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite, portableProvider, type CipherSuite, type KeyPair } from "../../keying/crypto/index.js";
import { confirmationTag } from "../../keying/mls/framing.js";
import { deriveEpochSecrets } from "../../keying/mls/key-schedule.js";
import {
  CredentialType,
  LeafNodeSource,
  PSKType,
  ProtocolVersion,
  encodeGroupContext,
  encodeGroupInfoTBS,
  type GroupContext,
  type GroupInfo,
  type KeyPackage,
  type PreSharedKeyID,
} from "../../keying/mls/messages.js";
import { computePskSecret } from "../../keying/mls/psk.js";
import { createWelcome, decryptWelcome, verifyGroupInfoSignature, welcomeEpoch } from "../../keying/mls/welcome.js";

let suite: CipherSuite;
let committer: KeyPair;
let init: KeyPair;
let keyPackage: KeyPackage;

/** A KeyPackage good enough for Welcome encryption: nothing here checks its LeafNode or signature. */
function makeKeyPackage(initKey: Uint8Array, name: string): KeyPackage {
  return {
    version: ProtocolVersion.mls10,
    cipherSuite: 1,
    initKey,
    leafNode: {
      encryptionKey: new Uint8Array(32),
      signatureKey: new Uint8Array(32),
      credential: { credentialType: CredentialType.basic, identity: utf8(name) },
      capabilities: { versions: [1], cipherSuites: [1], extensions: [], proposals: [], credentials: [1] },
      leafNodeSource: LeafNodeSource.keyPackage,
      lifetime: { notBefore: 0n, notAfter: 2n ** 63n },
      extensions: [],
      signature: new Uint8Array(64),
    },
    extensions: [],
    signature: new Uint8Array(64),
  };
}

beforeAll(async () => {
  suite = await getCipherSuite(1, portableProvider);
  committer = await suite.primitives.signatureGenerateKeyPair();
  init = await suite.primitives.hpkeGenerateKeyPair();
  keyPackage = makeKeyPackage(init.publicKey, "bob");
});

/** A committer's view of a new epoch: its secrets and the signed GroupInfo for it. */
async function newEpoch(pskSecret?: Uint8Array) {
  const groupContext: GroupContext = {
    version: ProtocolVersion.mls10,
    cipherSuite: 1,
    groupId: utf8("group"),
    epoch: 1n,
    treeHash: new Uint8Array(32).fill(9),
    confirmedTranscriptHash: new Uint8Array(32).fill(8),
    extensions: [],
  };
  const secrets = await deriveEpochSecrets(suite, {
    initSecret: new Uint8Array(32).fill(1),
    commitSecret: new Uint8Array(32).fill(2),
    pskSecret,
    groupContext: encode(encodeGroupContext, groupContext),
  });
  const tbs = { groupContext, extensions: [], confirmationTag: await confirmationTag(suite, secrets.confirmationKey, groupContext.confirmedTranscriptHash), signer: 0 };
  const groupInfo: GroupInfo = { ...tbs, signature: await suite.signWithLabel(committer.privateKey, "GroupInfoTBS", encode(encodeGroupInfoTBS, tbs)) };
  return { secrets, groupInfo };
}

describe("Welcome", () => {
  it("round-trips: the joiner reaches the committer's epoch secrets", async () => {
    const { secrets, groupInfo } = await newEpoch();
    const other = makeKeyPackage((await suite.primitives.hpkeGenerateKeyPair()).publicKey, "carol");
    const welcome = await createWelcome(suite, {
      groupInfo,
      joinerSecret: secrets.joinerSecret,
      psks: [],
      pskSecret: new Uint8Array(32),
      recipients: [{ keyPackage: other }, { keyPackage, pathSecret: { pathSecret: new Uint8Array(32).fill(4) } }],
    });
    const decrypted = await decryptWelcome(suite, welcome, { keyPackage, initPrivateKey: init.privateKey });
    expect(toHex(decrypted.groupSecrets.pathSecret!.pathSecret)).toBe(toHex(new Uint8Array(32).fill(4)));
    await verifyGroupInfoSignature(suite, decrypted.groupInfo, committer.publicKey);
    const joined = await welcomeEpoch(suite, decrypted);
    expect(toHex(joined.epochSecrets.epochAuthenticator)).toBe(toHex(secrets.epochAuthenticator));
    expect(toHex(joined.epochSecrets.encryptionSecret)).toBe(toHex(secrets.encryptionSecret));
  });

  it("needs the PSKs it names", async () => {
    const id: PreSharedKeyID = { psktype: PSKType.external, pskId: utf8("psk"), pskNonce: new Uint8Array(32) };
    const psk = new Uint8Array(32).fill(3);
    const pskSecret = await computePskSecret(suite, [{ id, psk }]);
    const { secrets, groupInfo } = await newEpoch(pskSecret);
    const welcome = await createWelcome(suite, { groupInfo, joinerSecret: secrets.joinerSecret, psks: [id], pskSecret, recipients: [{ keyPackage }] });
    const joiner = { keyPackage, initPrivateKey: init.privateKey };
    await expect(decryptWelcome(suite, welcome, joiner)).rejects.toMatchObject({ name: "MlsValidationError", code: "missing-psk" });
    const decrypted = await decryptWelcome(suite, welcome, joiner, () => psk);
    expect(toHex((await welcomeEpoch(suite, decrypted)).epochSecrets.resumptionPsk)).toBe(toHex(secrets.resumptionPsk));
  });

  it("rejects a Welcome not for us, a tampered GroupInfo, a wrong signer and a wrong confirmation tag", async () => {
    const { secrets, groupInfo } = await newEpoch();
    const joiner = { keyPackage, initPrivateKey: init.privateKey };
    const input = { groupInfo, joinerSecret: secrets.joinerSecret, psks: [], pskSecret: new Uint8Array(32), recipients: [{ keyPackage }] };
    const welcome = await createWelcome(suite, input);

    const notForUs = await createWelcome(suite, { ...input, recipients: [{ keyPackage: makeKeyPackage(init.publicKey, "eve") }] });
    await expect(decryptWelcome(suite, notForUs, joiner)).rejects.toMatchObject({ code: "not-for-us" });

    const gi = welcome.encryptedGroupInfo.slice();
    gi[gi.length - 1]! ^= 1;
    await expect(decryptWelcome(suite, { ...welcome, encryptedGroupInfo: gi }, joiner)).rejects.toMatchObject({ code: "decrypt-failed" });

    const decrypted = await decryptWelcome(suite, welcome, joiner);
    await expect(verifyGroupInfoSignature(suite, decrypted.groupInfo, (await suite.primitives.signatureGenerateKeyPair()).publicKey)).rejects.toMatchObject({
      code: "invalid-signature",
    });
    const badTag = { ...decrypted, groupInfo: { ...decrypted.groupInfo, confirmationTag: new Uint8Array(32) } };
    await expect(welcomeEpoch(suite, badTag)).rejects.toMatchObject({ code: "invalid-confirmation-tag" });
  });
});
