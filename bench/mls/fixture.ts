/**
 * The groups both implementations are measured on, built once per size with Conclave's MlsGroup (the
 * plan is in scenario.ts). Each implementation then starts from the same member states: Conclave's
 * directly, ts-mls's converted through its own decoders (see ts-mls.ts). Building them with ts-mls
 * itself is out of reach at 1000 members: ts-mls rebuilds the whole secret tree on every commit, so the
 * 1000 commits that fill the tree would take most of an hour.
 */
import { utf8 } from "../../keying/codec/bytes.js";
import { nativeProvider } from "../../keying/crypto/index.js";
import { MlsGroup, type KeyPackageBundle, type SigningIdentity } from "../../keying/mls/group.js";
import type { GroupState } from "../../keying/mls/group-state.js";
import { leafToNode } from "../../keying/mls/tree-math.js";
import { TreePrivateState } from "../../keying/mls/treekem.js";
import { groupPlan, type GroupPlan } from "./scenario.js";

export interface Person {
  readonly identity: SigningIdentity;
  /** The KeyPackage as an MLSMessage. */
  readonly message: Uint8Array;
  readonly bundle: KeyPackageBundle;
}

/** The committer's and the receiver's states in the same epoch. */
export interface Pair {
  readonly committer: GroupState;
  readonly receiver: GroupState;
}

export interface GroupFixture {
  readonly plan: GroupPlan;
  readonly blank: Pair;
  readonly full: Pair;
  /** Who joins by Welcome and who by external commit (not members yet). */
  readonly welcomeJoiner: Person;
  readonly externalJoiner: Person;
}

/**
 * MlsGroup keeps its state private; the benchmark reads and replaces it (as test/unit/group-harness.ts does)
 * to put a member back into the same epoch before each timed run and to build the full tree cheaply.
 */
export function stateOf(group: MlsGroup): GroupState {
  return (group as unknown as { state: GroupState }).state;
}

export function setState(group: MlsGroup, state: GroupState): void {
  (group as unknown as { state: GroupState }).state = state;
}

interface LeafKey {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

/**
 * A member's state built from another member's current state: the same public state and epoch secrets,
 * with this member's own leaf key and signature key. It is the state the member would hold after
 * processing every commit, minus the keys of parent nodes above it, which committing does not use; so
 * filling the tree costs one commit per leaf instead of every member processing every commit.
 */
export function impersonate(latest: GroupState, leaf: number, leafKey: LeafKey, signaturePrivateKey: Uint8Array): GroupState {
  return { ...latest, privateState: TreePrivateState.forLeaf(leaf, leafKey), signaturePrivateKey, proposals: [], pastEpochs: [] };
}

function leafKeyOf(state: GroupState, leaf: number): LeafKey {
  const x = leafToNode(leaf);
  const privateKey = state.privateState.privateKey(state.tree, x);
  if (!privateKey) throw new Error(`state of leaf ${leaf} lacks its leaf key`);
  return { privateKey, publicKey: state.tree.encryptionKey(x)! };
}

export async function buildFixture(members: number, log: (line: string) => void): Promise<GroupFixture> {
  const plan = groupPlan(members);
  const provider = nativeProvider;
  const start = performance.now();
  const people: Person[] = [];
  for (let i = 0; i < members + 2; i++) {
    const identity = await MlsGroup.generateIdentity(utf8(`member ${i}`), { provider });
    people.push({ identity, ...(await MlsGroup.generateKeyPackage(identity, { provider })) });
  }

  const group = await MlsGroup.create({ identity: people[0]!.identity, groupId: utf8("benchmark group"), provider });
  const added = await group.commit({ add: people.slice(1, members).map((p) => p.message), path: false });
  await group.mergePendingCommit();
  const receiver = await MlsGroup.joinFromWelcome({ welcome: added.welcome!, keyPackage: people[plan.receiver]!.bundle, provider });
  const blank: Pair = { committer: stateOf(group), receiver: stateOf(receiver) };

  const leafKeys: LeafKey[] = people.map((p) => ({ privateKey: p.bundle.encryptionPrivateKey, publicKey: p.bundle.keyPackage.leafNode.encryptionKey }));
  leafKeys[0] = leafKeyOf(blank.committer, 0);
  let latest = blank.committer;
  for (const leaf of plan.fillOrder) {
    setState(group, impersonate(latest, leaf, leafKeys[leaf]!, people[leaf]!.identity.signaturePrivateKey));
    await group.commit({});
    await group.mergePendingCommit();
    latest = stateOf(group);
    leafKeys[leaf] = leafKeyOf(latest, leaf);
  }
  const full: Pair = {
    committer: impersonate(latest, plan.committer, leafKeys[plan.committer]!, people[plan.committer]!.identity.signaturePrivateKey),
    receiver: latest,
  };
  log(`${members} members: groups built by Conclave in ${(performance.now() - start).toFixed(0)} ms`);
  return { plan, blank, full, welcomeJoiner: people[members]!, externalJoiner: people[members + 1]! };
}
