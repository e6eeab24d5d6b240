import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { decodeTree } from "../../../keying/mls/ratchet-tree.js";
import { treeHash, validateRatchetTree } from "../../../keying/mls/tree-hash.js";
import { eachCase, expectBytes, expectEqual, type VectorKind } from "../kind.js";

interface TreeValidationCase {
  cipher_suite: number;
  tree: string;
  group_id: string;
  resolutions: number[][];
  tree_hashes: string[];
}

/** §4.1.1 resolutions, §7.8 tree hashes of every node, and the §7.9.2/§12.4.3.1 checks of a joiner. */
const kind: VectorKind = {
  kind: "tree-validation",
  usesProvider: true,
  matches: (f) => f.name === "tree-validation.json",
  run: (f, provider) =>
    eachCase(f.json as TreeValidationCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const tree = decode(decodeTree, fromHex(c.tree));
      expectEqual("node count", tree.nodeCount, c.tree_hashes.length);
      for (let x = 0; x < tree.nodeCount; x++) {
        expectEqual(`resolution[${x}]`, tree.resolution(x).join(","), c.resolutions[x]!.join(","));
        expectBytes(`tree_hashes[${x}]`, await treeHash(suite, tree, x), c.tree_hashes[x]!);
      }
      await validateRatchetTree(suite, tree, fromHex(c.group_id));
    }),
};
export default kind;
