/**
 * Group metadata the providers of a call share: who is in it and which provider serves each member,
 * read from the public ratchet tree (each leaf's basic credential names "user/device", the user names its
 * provider), and the snapshot a joiner needs.
 */
import { decode } from "../../keying/codec/reader.js";
import { decodeTree } from "../../keying/mls/ratchet-tree.js";
import { CredentialType } from "../../keying/mls/messages.js";
import type { GroupSnapshot } from "../protocol.js";
import type { GroupRecord } from "../store/store.js";
import { providerOfUser } from "./identity.js";

export interface RosterEntry {
  readonly leafIndex: number;
  /** "user/device". */
  readonly member: string;
  readonly user: string;
  readonly device: string;
  /** The member's home provider; undefined for users without one (development names). */
  readonly provider: string | undefined;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The members of an encoded ratchet tree (as stored by the hub, which vetted it); [] if it does not decode. */
export function rosterOf(tree: Uint8Array): RosterEntry[] {
  let leaves;
  try {
    leaves = [...decode(decodeTree, tree).leaves()];
  } catch {
    return [];
  }
  const out: RosterEntry[] = [];
  for (const [leafIndex, leaf] of leaves) {
    if (leaf.credential.credentialType !== CredentialType.basic) continue;
    let member: string;
    try {
      member = utf8Decoder.decode(leaf.credential.identity);
    } catch {
      continue;
    }
    const slash = member.lastIndexOf("/");
    if (slash <= 0) continue;
    const user = member.slice(0, slash);
    out.push({ leafIndex, member, user, device: member.slice(slash + 1), provider: providerOfUser(user) });
  }
  return out;
}

export function snapshotOf(r: GroupRecord): GroupSnapshot {
  return { groupId: r.groupId, room: r.room, suite: r.suite, epoch: r.epoch, seq: r.seq, groupInfo: r.groupInfo, tree: r.tree };
}
