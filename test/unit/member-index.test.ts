import { describe, expect, it } from "vitest";
import { KeyMap } from "../../keying/mls/key-map.js";
import { LeafNodeSource, type LeafNode } from "../../keying/mls/messages.js";
import { RatchetTree } from "../../keying/mls/ratchet-tree.js";
import { directPath, leafToNode, type LeafIndex } from "../../keying/mls/tree-math.js";

/** A small deterministic generator, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return s / 2 ** 32;
  };
}

let serial = 0;
function key(): Uint8Array {
  const k = new Uint8Array(32);
  new DataView(k.buffer).setUint32(28, ++serial);
  return k;
}

function leaf(credentialType: number, supported: number[]): LeafNode {
  return {
    encryptionKey: key(),
    signatureKey: key(),
    credential: credentialType === 1 ? { credentialType: 1, identity: key() } : { credentialType: 2, certificates: [] },
    capabilities: { versions: [1], cipherSuites: [1], extensions: [], proposals: [], credentials: supported },
    extensions: [],
    leafNodeSource: LeafNodeSource.update,
    signature: new Uint8Array(64),
  };
}

/** Every question the index answers, asked of `tree`'s kept index and of one rebuilt from its nodes. */
function expectIndexMatchesNodes(tree: RatchetTree, keys: Uint8Array[]): void {
  const kept = tree.memberIndex();
  const rebuilt = RatchetTree.fromNodes(tree.toNodes()).memberIndex();
  expect(kept.memberCount).toBe(rebuilt.memberCount);
  expect(kept.memberCount).toBe(tree.memberCount);
  expect(kept.credentialTypesInUse().sort()).toEqual(rebuilt.credentialTypesInUse().sort());
  for (const type of [1, 2, 3]) expect(kept.credentialSupportedByAll(type)).toBe(rebuilt.credentialSupportedByAll(type));
  for (const k of keys) {
    expect(kept.signatureKeyOwner(k)).toBe(rebuilt.signatureKeyOwner(k));
    expect(kept.encryptionKeyOwner(k)).toBe(rebuilt.encryptionKeyOwner(k));
  }
}

describe("MemberIndex kept by RatchetTree", () => {
  it("answers like an index rebuilt from the nodes after any sequence of adds, updates, removes and path changes", () => {
    const random = rng(7);
    const keys: Uint8Array[] = [];
    const note = (l: LeafNode) => (keys.push(l.encryptionKey, l.signatureKey), l);
    let tree = RatchetTree.withFirstLeaf(note(leaf(1, [1, 2])));
    for (let step = 0; step < 400; step++) {
      // Clone often, as staging does, so copy-on-write is exercised on both sides.
      if (random() < 0.3) tree = tree.clone();
      const members = [...tree.leaves()].map(([i]) => i);
      const r = random();
      if (r < 0.4 || members.length < 2) {
        tree.addLeaf(note(leaf(random() < 0.8 ? 1 : 2, random() < 0.5 ? [1, 2] : [1])));
      } else if (r < 0.6) {
        tree.removeLeaf(members[Math.floor(random() * members.length)]!);
      } else if (r < 0.8) {
        tree.updateLeaf(members[Math.floor(random() * members.length)]!, note(leaf(1, [1, 2, 2])));
      } else {
        const sender = members[Math.floor(random() * members.length)]! as LeafIndex;
        for (const x of directPath(leafToNode(sender), tree.leafCount)) {
          const k = key();
          keys.push(k);
          tree.setParent(x, { encryptionKey: k, parentHash: new Uint8Array(0), unmergedLeaves: [] });
        }
      }
      if (step % 10 === 0) expectIndexMatchesNodes(tree, keys);
    }
    expectIndexMatchesNodes(tree, keys);
  });

  it.each(["original", "clone"])("a clone's changes never show in the original, nor the original's in the clone (%s changes first)", (first) => {
    const a = leaf(1, [1]);
    const b = leaf(1, [1]);
    const c = leaf(2, [1, 2]);
    const original = RatchetTree.withFirstLeaf(a);
    original.memberIndex();
    const copy = original.clone();
    if (first === "original") {
      original.addLeaf(b);
      copy.addLeaf(c);
    } else {
      copy.addLeaf(c);
      original.addLeaf(b);
    }
    expect(original.memberIndex().signatureKeyOwner(c.signatureKey)).toBeUndefined();
    expect(copy.memberIndex().signatureKeyOwner(b.signatureKey)).toBeUndefined();
    expect(copy.memberIndex().signatureKeyOwner(c.signatureKey)).toBe(1);
    expect(original.memberIndex().signatureKeyOwner(b.signatureKey)).toBe(1);
    expect(copy.memberIndex().credentialTypesInUse().sort()).toEqual([1, 2]);
    expect(original.memberIndex().credentialTypesInUse()).toEqual([1]);
  });
});

describe("KeyMap", () => {
  it("keeps keys that share a bucket apart, and a clone independent of later changes", () => {
    // Same first four bytes and length: one bucket.
    const k = (last: number) => Uint8Array.of(9, 9, 9, 9, last);
    const map = new KeyMap<number>().set(k(1), 1).set(k(2), 2).set(k(3), 3);
    const copy = map.clone();
    map.set(k(2), 20).delete(k(1));
    copy.set(k(4), 4);
    expect([map.get(k(1)), map.get(k(2)), map.get(k(3)), map.get(k(4)), map.size]).toEqual([undefined, 20, 3, undefined, 2]);
    expect([copy.get(k(1)), copy.get(k(2)), copy.get(k(3)), copy.get(k(4)), copy.size]).toEqual([1, 2, 3, 4, 4]);
  });
});
