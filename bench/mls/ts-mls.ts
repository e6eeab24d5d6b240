/**
 * The ts-mls side of the MLS benchmark: the npm package ts-mls with its default crypto provider (WebCrypto
 * HPKE through @hpke/core, noble signatures), through its public API. Messages cross as MLSMessage bytes,
 * so encoding and decoding are timed, as they are for Conclave.
 *
 * Its member states are the fixture's (built by Conclave), converted the way a ts-mls member would hold
 * them: group context and ratchet tree through ts-mls's own decoders, the epoch's key schedule (the same
 * eight secrets under the same names), the secret tree from the epoch's encryption secret, and the
 * member's private path keys. Every measured operation then runs entirely inside ts-mls.
 */
import {
  acceptAll,
  createCommit,
  createGroupInfoWithExternalPubAndRatchetTree,
  decodeMlsMessage,
  emptyPskIndex,
  encodeMlsMessage,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  joinGroupExternal,
  processMessage,
  type CiphersuiteImpl,
  type ClientState,
  type KeyPackage,
  type MLSMessage,
  type PrivateKeyPackage,
  type Proposal,
} from "ts-mls";
import { defaultClientConfig } from "ts-mls/clientConfig.js";
import { decodeGroupContext } from "ts-mls/groupContext.js";
import { decodeRatchetTree } from "ts-mls/ratchetTree.js";
import { createSecretTree } from "ts-mls/secretTree.js";
import { leafWidth } from "ts-mls/treemath.js";
import { encode } from "../../keying/codec/writer.js";
import type { GroupState } from "../../keying/mls/group-state.js";
import { encodeGroupContext } from "../../keying/mls/messages.js";
import { encodeTree } from "../../keying/mls/ratchet-tree.js";
import { root } from "../../keying/mls/tree-math.js";
import type { GroupFixture, Person } from "./fixture.js";
import { measure, type Implementation, type Measured, type RunOptions } from "./scenario.js";

function decodeWith<T>(decoder: (b: Uint8Array, offset: number) => [T, number] | undefined, bytes: Uint8Array, what: string): T {
  const decoded = decoder(bytes, 0);
  if (!decoded || decoded[1] !== bytes.length) throw new Error(`ts-mls could not decode the ${what}`);
  return decoded[0];
}

const decodeMessage = (bytes: Uint8Array): MLSMessage => decodeWith(decodeMlsMessage, bytes, "MLSMessage");

function commitMessage(bytes: Uint8Array) {
  const m = decodeMessage(bytes);
  if (m.wireformat !== "mls_public_message" && m.wireformat !== "mls_private_message") throw new Error(`expected a commit, got ${m.wireformat}`);
  return m;
}

async function toClientState(s: GroupState, cs: CiphersuiteImpl): Promise<ClientState> {
  const ratchetTree = decodeWith(decodeRatchetTree, encode(encodeTree, s.tree), "ratchet tree");
  // At the start of an epoch the secret tree holds nothing but its root: the encryption secret.
  const secretRoot = root(s.tree.leafCount);
  const encryptionSecret = s.secretTree.exportState().nodes.find(([x]) => x === secretRoot)?.[1];
  if (!encryptionSecret) throw new Error("the fixture's secret tree has been used already");
  const privateKeys: Record<number, Uint8Array> = {};
  for (const x of s.privateState.nodes) privateKeys[x] = s.privateState.privateKey(s.tree, x)!;
  return {
    groupContext: decodeWith(decodeGroupContext, encode(encodeGroupContext, s.context), "group context"),
    keySchedule: { ...s.keys },
    secretTree: await createSecretTree(leafWidth(ratchetTree.length), encryptionSecret, cs.kdf),
    ratchetTree,
    privatePath: { leafIndex: s.privateState.leafIndex, privateKeys },
    signaturePrivateKey: s.signaturePrivateKey,
    unappliedProposals: {},
    confirmationTag: s.confirmationTag,
    historicalReceiverData: new Map(),
    groupActiveState: { kind: "active" },
    clientConfig: defaultClientConfig,
  };
}

function toKeyPackage(p: Person): { publicPackage: KeyPackage; privatePackage: PrivateKeyPackage } {
  const m = decodeMessage(p.message);
  if (m.wireformat !== "mls_key_package") throw new Error("expected a KeyPackage");
  return {
    publicPackage: m.keyPackage,
    privatePackage: { initPrivateKey: p.bundle.initPrivateKey, hpkePrivateKey: p.bundle.encryptionPrivateKey, signaturePrivateKey: p.bundle.signaturePrivateKey },
  };
}

async function run(fixture: GroupFixture, options: RunOptions, record: (scenario: string, op: string, m: Measured) => void): Promise<void> {
  const { plan } = fixture;
  const { iterations } = options;
  const cs = await getCiphersuiteImpl(getCiphersuiteFromName("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"));
  const commitOf = (state: ClientState, proposals: Proposal[], extra: { ratchetTreeExtension?: boolean } = {}) =>
    createCommit({ state, cipherSuite: cs }, { extraProposals: proposals, wireAsPublicMessage: true, ...extra });
  const timeProcess = (state: ClientState, message: Uint8Array) =>
    measure(iterations, async () => {
      await processMessage(commitMessage(message), state, emptyPskIndex, acceptAll, cs);
      return message.length;
    });
  const remove: Proposal = { proposalType: "remove", remove: { removed: plan.removed } };

  let message: Uint8Array = new Uint8Array(0);
  let full: { committer: ClientState; receiver: ClientState } | undefined;
  for (const [scenario, pair] of [
    ["blank-tree", fixture.blank],
    ["full-tree", fixture.full],
  ] as const) {
    const committer = await toClientState(pair.committer, cs);
    const receiver = await toClientState(pair.receiver, cs);
    record(
      scenario,
      "commit",
      await measure(iterations, async () => {
        message = encodeMlsMessage((await commitOf(committer, [remove])).commit);
        return message.length;
      }),
    );
    record(scenario, "process", await timeProcess(receiver, message));
    full = { committer, receiver };
  }
  const { committer, receiver } = full!;

  // Joining by Welcome: an Add without a path, the ratchet tree inside the Welcome's GroupInfo.
  const welcomeJoiner = toKeyPackage(fixture.welcomeJoiner);
  const add: Proposal = { proposalType: "add", add: { keyPackage: welcomeJoiner.publicPackage } };
  let welcome: Uint8Array = new Uint8Array(0);
  record(
    "welcome",
    "commit",
    await measure(iterations, async () => {
      const out = await commitOf(committer, [add], { ratchetTreeExtension: true });
      welcome = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: out.welcome! });
      return encodeMlsMessage(out.commit).length;
    }),
  );
  record(
    "welcome",
    "join",
    await measure(iterations, async () => {
      const m = decodeMessage(welcome);
      if (m.wireformat !== "mls_welcome") throw new Error("expected a Welcome");
      await joinGroup(m.welcome, welcomeJoiner.publicPackage, welcomeJoiner.privatePackage, emptyPskIndex, cs);
      return welcome.length;
    }),
  );

  // External join: a GroupInfo with external_pub and the ratchet tree, signed by the receiver.
  const externalJoiner = toKeyPackage(fixture.externalJoiner);
  const groupInfo = encodeMlsMessage({ version: "mls10", wireformat: "mls_group_info", groupInfo: await createGroupInfoWithExternalPubAndRatchetTree(receiver, [], cs) });
  record(
    "external-join",
    "join",
    await measure(iterations, async () => {
      const m = decodeMessage(groupInfo);
      if (m.wireformat !== "mls_group_info") throw new Error("expected a GroupInfo");
      const joined = await joinGroupExternal(m.groupInfo, externalJoiner.publicPackage, externalJoiner.privatePackage, false, cs);
      message = encodeMlsMessage({ version: "mls10", wireformat: "mls_public_message", publicMessage: joined.publicMessage });
      return message.length;
    }),
  );
  record("external-join", "process", await timeProcess(receiver, message));
}

export const tsMls: Implementation = { name: "ts-mls", run };
