import type { CryptoProvider } from "./cipher-suite.js";
import { composePrimitives } from "./compose.js";
import { CryptoError } from "./errors.js";
import { hpkeJs } from "./hpke-js.js";
import { nobleBackend as noble } from "./noble-backend.js";
import { SUITES } from "./suites.js";

/**
 * The portable provider: @noble/* for hashing, AEAD and signatures, hpke-js for HPKE. It runs
 * wherever JavaScript does (hpke-js itself uses WebCrypto where it can) and, being an independent
 * implementation, is the reference the native provider is tested against.
 */
export const portableProvider: CryptoProvider = {
  name: "portable",
  async primitives(id) {
    const params = SUITES[id];
    if (!params) throw new CryptoError("unsupported-suite", `cipher suite ${String(id)}`);
    return composePrimitives(params, {
      hash: noble.hash(params.hash),
      aead: noble.aead(params.aead),
      signer: noble.signer(params.signature),
      hpke: hpkeJs(params),
      randomBytes: noble.randomBytes,
    });
  },
};
