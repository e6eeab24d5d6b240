import { describe } from "vitest";
import { portableProvider } from "../../keying/crypto/index.js";
import { vectorFolderTest } from "./suite.js";

describe("official vectors, portable provider", () => {
  vectorFolderTest("mls-test-vectors", [portableProvider]);
});
