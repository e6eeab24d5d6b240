import { beforeAll, describe, expect, it } from "vitest";
import { utf8 } from "../../keying/codec/bytes.js";
import { encode } from "../../keying/codec/writer.js";
import { getCipherSuite, portableProvider, type CipherSuite } from "../../keying/crypto/index.js";
import { MlsGroup, keyPackageFrom } from "../../keying/mls/group.js";
import { generateKeyPackage, generateSigningIdentity, isLastResort, verifyKeyPackage, type SigningIdentity } from "../../keying/mls/key-package.js";
import { signLeafNode } from "../../keying/mls/leaf-node.js";
import { ExtensionType, encodeKeyPackageTBS, type KeyPackage } from "../../keying/mls/messages.js";

let suite: CipherSuite;
let identity: SigningIdentity;

beforeAll(async () => {
  suite = await getCipherSuite(1);
  identity = await generateSigningIdentity(suite, utf8("alice"));
});

/** Re-signs a KeyPackage after a change, so only the check under test fails. */
async function resigned(kp: KeyPackage): Promise<KeyPackage> {
  const signature = await suite.signWithLabel(identity.signaturePrivateKey, "KeyPackageTBS", encode(encodeKeyPackageTBS, kp));
  return { ...kp, signature };
}

describe("KeyPackages", () => {
  it("generates valid KeyPackages, last-resort ones included, and round-trips them as MLSMessages", async () => {
    const { keyPackage } = await generateKeyPackage(suite, identity);
    await verifyKeyPackage(suite, keyPackage);
    expect(isLastResort(keyPackage)).toBe(false);
    const last = await generateKeyPackage(suite, identity, { lastResort: true });
    await verifyKeyPackage(suite, last.keyPackage);
    expect(isLastResort(last.keyPackage)).toBe(true);
    expect(last.keyPackage.leafNode.capabilities.extensions).toContain(ExtensionType.lastResort);
    const { message, bundle } = await MlsGroup.generateKeyPackage(identity, { lastResort: true });
    expect(keyPackageFrom(message)).toEqual(bundle.keyPackage);
    // A group adds a last-resort KeyPackage like any other.
    const alice = await MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("creator")) });
    const out = await alice.commit({ add: [message] });
    await alice.mergePendingCommit();
    const joined = await MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: bundle });
    expect(joined.epoch).toBe(alice.epoch);
  });

  it("refuses bad signatures, init_key = encryption_key, expired lifetimes, unlisted extensions and other suites", async () => {
    const { keyPackage } = await generateKeyPackage(suite, identity);
    const badSig = { ...keyPackage, signature: keyPackage.signature.map((b, i) => (i === 0 ? b ^ 1 : b)) };
    await expect(verifyKeyPackage(suite, badSig)).rejects.toMatchObject({ code: "invalid-signature" });
    await expect(verifyKeyPackage(suite, await resigned({ ...keyPackage, initKey: keyPackage.leafNode.encryptionKey }))).rejects.toMatchObject({ code: "invalid-key-package" });
    await expect(verifyKeyPackage(suite, keyPackage, keyPackage.leafNode.leafNodeSource === 1 ? keyPackage.leafNode.lifetime.notAfter + 1n : 0n)).rejects.toMatchObject({ code: "invalid-lifetime" });
    await expect(verifyKeyPackage(suite, await resigned({ ...keyPackage, version: 2 }))).rejects.toMatchObject({ code: "wrong-version" });
    await expect(verifyKeyPackage(await getCipherSuite(3), keyPackage)).rejects.toMatchObject({ code: "wrong-cipher-suite" });
    // A leaf extension its capabilities do not list.
    const leaf = await signLeafNode(suite, { ...keyPackage.leafNode, extensions: [{ extensionType: 0xf00d, extensionData: new Uint8Array(1) }] }, identity.signaturePrivateKey);
    await expect(verifyKeyPackage(suite, await resigned({ ...keyPackage, leafNode: leaf }))).rejects.toMatchObject({ code: "unsupported-capability" });
    // A lifetime longer than the policy's maximum (one year by default).
    const long = await generateKeyPackage(suite, identity, { lifetime: { notBefore: 0n, notAfter: 2n ** 62n } });
    await expect(verifyKeyPackage(suite, long.keyPackage)).rejects.toMatchObject({ code: "invalid-lifetime" });
  });

  it("works over the portable provider", async () => {
    const portable = await getCipherSuite(1, portableProvider);
    const id = await generateSigningIdentity(portable, utf8("bob"));
    const { keyPackage } = await generateKeyPackage(portable, id, { lastResort: true });
    await verifyKeyPackage(suite, keyPackage);
  });
});
