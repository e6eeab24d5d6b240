import { left, nodeWidth, parent, right, root, sibling, level } from "../../../keying/mls/tree-math.js";
import { eachCase, expectEqual, type VectorKind } from "../kind.js";

interface TreeMathCase {
  n_leaves: number;
  n_nodes: number;
  root: number;
  left: (number | null)[];
  right: (number | null)[];
  parent: (number | null)[];
  sibling: (number | null)[];
}

function expectArray(field: string, got: (number | null)[], want: (number | null)[]): void {
  expectEqual(`${field} length`, got.length, want.length);
  for (let i = 0; i < want.length; i++) expectEqual(`${field}[${i}]`, got[i], want[i]);
}

/** RFC 9420 Appendix C on every node of trees of each size: no cryptography. */
const kind: VectorKind = {
  kind: "tree-math",
  usesProvider: false,
  matches: (f) => f.name === "tree-math.json",
  run: (f) =>
    eachCase(f.json as TreeMathCase[], (c) => {
      const n = c.n_leaves;
      expectEqual("n_nodes", nodeWidth(n), c.n_nodes);
      const r = root(n);
      expectEqual("root", r, c.root);
      const nodes = [...Array(c.n_nodes).keys()];
      const isLeaf = (x: number): boolean => level(x) === 0;
      expectArray("left", nodes.map((x) => (isLeaf(x) ? null : left(x))), c.left);
      expectArray("right", nodes.map((x) => (isLeaf(x) ? null : right(x))), c.right);
      expectArray("parent", nodes.map((x) => (x === r ? null : parent(x, n))), c.parent);
      expectArray("sibling", nodes.map((x) => (x === r ? null : sibling(x, n))), c.sibling);
    }),
};
export default kind;
