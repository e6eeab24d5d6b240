/** Printing an object that holds key material (console.log, util.inspect) shows a summary, not the keys. */
import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import { CallKeyring } from "../../keying/call/keyring.js";
import { MlsGroup } from "../../keying/mls/group.js";
import { EpochKeyring } from "../../keying/sframe/mls.js";

/** util.inspect prints bytes as a decimal list padded for alignment (first four share a row); hex for good measure. */
function leaks(printed: string, secret: Uint8Array): boolean {
  const decimal = new RegExp(`\\b${[...secret.slice(0, 4)].join(",\\s+")}\\b`);
  return decimal.test(printed) || printed.includes(toHex(secret).slice(0, 16));
}

describe("redacted inspection", () => {
  it("an MlsGroup, its keyring and SFrame keys print no secrets", async () => {
    const identity = await MlsGroup.generateIdentity(utf8("alice/d1"));
    const group = await MlsGroup.create({ identity });
    const exported = await group.exportSecret("SFrame 1.0 Base Key", new Uint8Array(0), 16);
    const keyring = new EpochKeyring();
    await keyring.addEpoch(group.epoch, group.leafIndex, exported);
    // The detector itself finds a key where one is printed.
    expect(leaks(inspect(identity), identity.signaturePrivateKey)).toBe(true);
    const call = new CallKeyring();
    await call.advance(group);

    for (const [name, value] of [
      ["MlsGroup", group],
      ["EpochKeyring", keyring],
      ["SFrameContext", keyring.context],
      ["CallKeyring", call],
    ] as const) {
      const printed = inspect({ value }, { depth: Infinity });
      expect(printed).toContain(`${name} {`);
      expect(printed).toContain("[secrets redacted]");
      expect(leaks(printed, identity.signaturePrivateKey)).toBe(false);
      expect(leaks(printed, exported)).toBe(false);
    }
    expect(inspect(group)).toBe("MlsGroup { epoch: 0, leafIndex: 0, [secrets redacted] }");
  });
});
