import { CipherSuite, type CryptoProvider } from "./cipher-suite.js";
import { CryptoError } from "./errors.js";
import { isCipherSuiteId, type CipherSuiteId } from "./suites.js";
import { nativeProvider } from "./native.js";

export { CipherSuite, type CryptoProvider, type HpkeCiphertext, type KeyPair, type SuitePrimitives } from "./cipher-suite.js";
export { CryptoError, type CryptoErrorCode } from "./errors.js";
export {
  SUITES,
  SUITE_IDS,
  isCipherSuiteId,
  type AeadAlgorithm,
  type CipherSuiteId,
  type HashAlgorithm,
  type KemAlgorithm,
  type SignatureScheme,
  type SuiteParams,
} from "./suites.js";
export { nativeProvider } from "./native.js";
export { portableProvider } from "./portable.js";

const suites = new WeakMap<CryptoProvider, Map<CipherSuiteId, Promise<CipherSuite>>>();

/** The CipherSuite for `id` over `provider`, built once per (provider, suite). */
export function getCipherSuite(id: CipherSuiteId, provider: CryptoProvider = nativeProvider): Promise<CipherSuite> {
  if (!isCipherSuiteId(id)) return Promise.reject(new CryptoError("unsupported-suite", `cipher suite ${String(id)}`));
  let perProvider = suites.get(provider);
  if (!perProvider) suites.set(provider, (perProvider = new Map()));
  let suite = perProvider.get(id);
  if (!suite) {
    suite = provider.primitives(id).then((p) => new CipherSuite(p));
    perProvider.set(id, suite);
    // A failed build must not poison the cache.
    suite.catch(() => perProvider.delete(id));
  }
  return suite;
}
