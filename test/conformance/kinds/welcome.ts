import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { WireFormat, decodeMLSMessage } from "../../../keying/mls/messages.js";
import { decryptWelcome, verifyGroupInfoSignature, welcomeEpoch } from "../../../keying/mls/welcome.js";
import { eachCase, type VectorKind } from "../kind.js";

interface WelcomeCase {
  cipher_suite: number;
  init_priv: string;
  signer_pub: string;
  key_package: string;
  welcome: string;
}

/** §12.4.3.1: decrypt a Welcome for our KeyPackage, verify the GroupInfo signature and confirmation tag. */
const kind: VectorKind = {
  kind: "welcome",
  usesProvider: true,
  matches: (f) => f.name === "welcome.json",
  run: (f, provider) =>
    eachCase(f.json as WelcomeCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const kp = decode(decodeMLSMessage, fromHex(c.key_package));
      const welcome = decode(decodeMLSMessage, fromHex(c.welcome));
      if (kp.wireFormat !== WireFormat.mlsKeyPackage) throw new Error("key_package is not an MLSMessage(KeyPackage)");
      if (welcome.wireFormat !== WireFormat.mlsWelcome) throw new Error("welcome is not an MLSMessage(Welcome)");
      const decrypted = await decryptWelcome(suite, welcome.welcome, { keyPackage: kp.keyPackage, initPrivateKey: fromHex(c.init_priv) });
      await verifyGroupInfoSignature(suite, decrypted.groupInfo, fromHex(c.signer_pub));
      await welcomeEpoch(suite, decrypted);
    }),
};

export default kind;
