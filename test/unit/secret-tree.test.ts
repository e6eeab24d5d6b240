import { beforeAll, describe, expect, it } from "vitest";
import { toHex } from "../../keying/codec/bytes.js";
import { getCipherSuite, portableProvider, type CipherSuite } from "../../keying/crypto/index.js";
import { SecretTree, type GenerationKey } from "../../keying/mls/secret-tree.js";

let suite: CipherSuite;
const encryptionSecret = new Uint8Array(32).fill(7);

beforeAll(async () => {
  suite = await getCipherSuite(1, portableProvider);
});

/** Reads a key as a receiver: consumed once `use` resolves. */
function receive(tree: SecretTree, leaf: number, generation: number, type: "handshake" | "application" = "application") {
  return tree.withKey(leaf, type, generation, async (k) => k);
}

async function senderKeys(count: number, leaf = 0): Promise<GenerationKey[]> {
  const sender = new SecretTree(suite, encryptionSecret, 4);
  const keys: GenerationKey[] = [];
  for (let i = 0; i < count; i++) keys.push(await sender.nextKey(leaf, "application"));
  return keys;
}

describe("SecretTree", () => {
  it("gives the receiver the sender's keys, generation by generation", async () => {
    const sent = await senderKeys(4);
    expect(sent.map((k) => k.generation)).toEqual([0, 1, 2, 3]);
    const receiver = new SecretTree(suite, encryptionSecret, 4);
    for (const k of sent) {
      const got = await receive(receiver, 0, k.generation);
      expect(toHex(got.key)).toBe(toHex(k.key));
      expect(toHex(got.nonce)).toBe(toHex(k.nonce));
    }
  });

  it("keeps handshake and application ratchets and leaves apart", async () => {
    const tree = new SecretTree(suite, encryptionSecret, 4);
    const keys = [await receive(tree, 0, 0, "handshake"), await receive(tree, 0, 0, "application"), await receive(tree, 1, 0, "application")];
    expect(new Set(keys.map((k) => toHex(k.key))).size).toBe(3);
  });

  it("accepts out-of-order generations within the window once, and refuses replays", async () => {
    const sent = await senderKeys(6);
    const tree = new SecretTree(suite, encryptionSecret, 4);
    for (const g of [5, 2, 0, 3]) expect(toHex((await receive(tree, 0, g)).key)).toBe(toHex(sent[g]!.key));
    for (const g of [5, 2, 0, 3]) await expect(receive(tree, 0, g)).rejects.toMatchObject({ name: "MlsValidationError", code: "generation-consumed" });
    // The two generations never used are still there.
    expect(toHex((await receive(tree, 0, 4)).key)).toBe(toHex(sent[4]!.key));
    expect(toHex((await receive(tree, 0, 1)).key)).toBe(toHex(sent[1]!.key));
  });

  it("refuses a generation too far ahead with a typed error, and takes one at the edge", async () => {
    const tree = new SecretTree(suite, encryptionSecret, 4, { maxForwardDistance: 50 });
    await expect(receive(tree, 2, 51)).rejects.toMatchObject({ name: "MlsValidationError", code: "generation-too-far" });
    await expect(receive(tree, 2, 50)).resolves.toMatchObject({});
    await expect(receive(tree, 2, 101)).resolves.toMatchObject({});
    await expect(receive(tree, 2, 153)).rejects.toMatchObject({ code: "generation-too-far" });
  });

  it("drops the oldest skipped keys beyond the retention bound", async () => {
    const tree = new SecretTree(suite, encryptionSecret, 4, { maxRetainedKeys: 3 });
    await receive(tree, 0, 10);
    await expect(receive(tree, 0, 6)).rejects.toMatchObject({ code: "generation-consumed" });
    for (const g of [7, 8, 9]) await expect(receive(tree, 0, g)).resolves.toMatchObject({});
  });

  it("keeps a key whose use failed, so the genuine message still decrypts", async () => {
    const tree = new SecretTree(suite, encryptionSecret, 4);
    await expect(tree.withKey(1, "handshake", 3, () => Promise.reject(new Error("forged")))).rejects.toThrow("forged");
    await expect(receive(tree, 1, 3, "handshake")).resolves.toMatchObject({});
    // The failed attempt did not move the ratchet past 0..2 either.
    for (const g of [0, 1, 2]) await expect(receive(tree, 1, g, "handshake")).resolves.toMatchObject({});
  });

  it("serializes concurrent requests on one ratchet", async () => {
    const sent = await senderKeys(8);
    const tree = new SecretTree(suite, encryptionSecret, 4);
    const got = await Promise.all([7, 3, 5, 0].map((g) => receive(tree, 0, g)));
    expect(got.map((k) => toHex(k.key))).toEqual([7, 3, 5, 0].map((g) => toHex(sent[g]!.key)));
  });

  it("rejects a leaf outside the tree and an impossible generation", async () => {
    const tree = new SecretTree(suite, encryptionSecret, 4);
    await expect(receive(tree, 4, 0)).rejects.toMatchObject({ code: "invalid-leaf-index" });
    await expect(receive(tree, 0, -1)).rejects.toMatchObject({ code: "generation-too-far" });
    await expect(receive(tree, 0, 2 ** 32)).rejects.toMatchObject({ code: "generation-too-far" });
  });

  it("derives only the path to the leaf it needs in a 1024-leaf tree", async () => {
    let treeExpansions = 0;
    const counting: CipherSuite = Object.create(suite, {
      expandWithLabel: {
        value: (secret: Uint8Array, label: string, context: Uint8Array, length: number) => {
          if (label === "tree") treeExpansions++;
          return suite.expandWithLabel(secret, label, context, length);
        },
      },
    });
    const tree = new SecretTree(counting, encryptionSecret, 1024);
    await receive(tree, 1000, 0);
    expect(treeExpansions).toBe(2 * 10);
    // A neighbour shares all but the last split.
    await receive(tree, 1001, 0);
    expect(treeExpansions).toBe(2 * 10);
    await receive(tree, 3, 0);
    expect(treeExpansions).toBe(2 * 10 + 2 * 9);
  });
});
