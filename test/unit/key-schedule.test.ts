import { describe, expect, it } from "vitest";
import { toHex } from "../../keying/codec/bytes.js";
import { getCipherSuite, nativeProvider, portableProvider } from "../../keying/crypto/index.js";
import { deriveEpochSecrets, deriveWelcomeSecret, externalInitReceiver, externalInitSender, externalKeyPair, mlsExporter } from "../../keying/mls/key-schedule.js";

describe("key schedule", () => {
  it("external init: the joiner and the group reach the same init_secret, across providers", async () => {
    const native = await getCipherSuite(1, nativeProvider);
    const portable = await getCipherSuite(1, portableProvider);
    const externalSecret = new Uint8Array(32).fill(5);
    const group = await externalKeyPair(native, externalSecret);
    const joiner = await externalInitSender(portable, (await externalKeyPair(portable, externalSecret)).publicKey);
    expect(joiner.initSecret.length).toBe(32);
    expect(toHex(await externalInitReceiver(native, group.privateKey, joiner.kemOutput))).toBe(toHex(joiner.initSecret));
    // Each external init is a fresh encapsulation.
    expect(toHex((await externalInitSender(native, group.publicKey)).initSecret)).not.toBe(toHex(joiner.initSecret));
  });

  it("welcome_secret alone matches the full schedule's, and PSKs change every secret", async () => {
    const suite = await getCipherSuite(1, portableProvider);
    const input = { initSecret: new Uint8Array(32).fill(1), commitSecret: new Uint8Array(32).fill(2), groupContext: new Uint8Array([1, 2, 3]) };
    const plain = await deriveEpochSecrets(suite, input);
    expect(toHex(await deriveWelcomeSecret(suite, plain.joinerSecret))).toBe(toHex(plain.welcomeSecret));
    const withPsk = await deriveEpochSecrets(suite, { ...input, pskSecret: new Uint8Array(32).fill(3) });
    expect(toHex(withPsk.joinerSecret)).toBe(toHex(plain.joinerSecret));
    expect(toHex(withPsk.epochAuthenticator)).not.toBe(toHex(plain.epochAuthenticator));
    expect(toHex(await mlsExporter(suite, plain.exporterSecret, "SFrame 1.0 Base Key", new Uint8Array(0), 16))).not.toBe(
      toHex(await mlsExporter(suite, withPsk.exporterSecret, "SFrame 1.0 Base Key", new Uint8Array(0), 16)),
    );
  });
});
