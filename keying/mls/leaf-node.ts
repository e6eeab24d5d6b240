import { encode } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { LeafNodeSource, encodeLeafNodeTBS, type LeafNode, type LeafNodeContent } from "./messages.js";
import type { LeafIndex } from "./tree-math.js";

/**
 * Where a LeafNode's signature is bound (§7.2): a group and leaf position for update and commit
 * leaves, nothing for key_package leaves (signed before the group is known).
 */
export interface LeafNodeSignatureContext {
  readonly groupId: Uint8Array;
  readonly leafIndex: LeafIndex;
}

function leafNodeTBS(content: LeafNodeContent, context: LeafNodeSignatureContext | undefined): Uint8Array {
  if (content.leafNodeSource === LeafNodeSource.keyPackage) return encode(encodeLeafNodeTBS, { leafNode: content });
  if (!context) throw new TypeError("an update or commit LeafNode is signed with its group_id and leaf_index");
  return encode(encodeLeafNodeTBS, { leafNode: content, groupId: context.groupId, leafIndex: context.leafIndex });
}

/** SignWithLabel(signature_key, "LeafNodeTBS", LeafNodeTBS). */
export async function signLeafNode(
  suite: CipherSuite,
  content: LeafNodeContent,
  signaturePrivateKey: Uint8Array,
  context?: LeafNodeSignatureContext,
): Promise<LeafNode> {
  const signature = await suite.signWithLabel(signaturePrivateKey, "LeafNodeTBS", leafNodeTBS(content, context));
  return { ...content, signature };
}

/** Whether the leaf's signature verifies under its own signature_key. */
export function verifyLeafNodeSignature(suite: CipherSuite, leaf: LeafNode, context?: LeafNodeSignatureContext): Promise<boolean> {
  return suite.verifyWithLabel(leaf.signatureKey, "LeafNodeTBS", leafNodeTBS(leaf, context), leaf.signature);
}
