import { describe } from "vitest";
import { nativeProvider } from "../../keying/crypto/index.js";
import { vectorFolderTest } from "./suite.js";

// The portable provider runs in its own test file so the two providers' runs use both test workers.
describe("official vectors, native provider", () => {
  vectorFolderTest("mls-test-vectors", [nativeProvider]);
  vectorFolderTest("sframe-test-vectors", [nativeProvider]);
});
