/**
 * The call keyring: what the media layer and the screen need from each MLS epoch of a call (BRIEF
 * decisions 5 and 8). Every membership change is a commit, so every epoch of the group yields:
 *   - the SFrame base_key, MLS-Exporter("SFrame 1.0 Base Key", "", Nk) (RFC 9605 §5.2), via keying/sframe;
 *   - the safety code, the epoch_authenticator as six groups of five digits;
 *   - the roster, so joins and leaves can be shown.
 * Epochs only move forward here, as they must for the SFrame keyring, which refuses an older epoch.
 */
import type { EpochChange, Member, MlsGroup } from "../mls/group.js";
import { DEFAULT_SFRAME_SUITE, mlsBaseKey, sframeSuite, type SFrameSuiteId } from "../sframe/index.js";
import { safetyCode } from "./safety-code.js";
import { INSPECT, redacted } from "../redact.js";

/** A member of the call as the UI names it: the basic credential's identity ("user/device"). */
export interface CallMember {
  readonly leafIndex: number;
  readonly identity: string;
}

/**
 * One epoch's keys. `epoch`, `baseKey` and `myLeafIndex` are exactly what the frame-transform worker's
 * EpochUpdate takes. `baseKey` and `epochAuthenticator` are secret-derived: never log them.
 */
export interface CallEpoch {
  readonly epoch: bigint;
  readonly myLeafIndex: number;
  readonly sframeSuite: SFrameSuiteId;
  readonly baseKey: Uint8Array;
  readonly epochAuthenticator: Uint8Array;
  readonly safetyCode: string;
  readonly members: readonly CallMember[];
}

/** Who joined and who left in one commit. */
export interface MembershipChange {
  readonly joined: readonly CallMember[];
  readonly left: readonly CallMember[];
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: false });

/** Members are shared by successive epochs (group-state.ts), so each is decoded once, not once per epoch. */
const callMembers = new WeakMap<Pick<Member, "leafIndex" | "identity">, CallMember>();

export function callMemberOf(m: Pick<Member, "leafIndex" | "identity">): CallMember {
  let c = callMembers.get(m);
  if (!c) callMembers.set(m, (c = { leafIndex: m.leafIndex, identity: utf8Decoder.decode(m.identity) }));
  return c;
}

/**
 * The joins and leaves of a commit, read from the group after it was applied. An external commit adds its
 * committer through ExternalInit rather than an Add proposal, so the committer's leaf is the joiner; a
 * resync (same identity leaving and joining in one commit) is reported as both, which is what happened.
 */
export function membershipChangeOf(change: EpochChange, after: Pick<MlsGroup, "member">): MembershipChange {
  const joined = change.added.map(callMemberOf);
  if (change.external) {
    const joiner = after.member(change.committer);
    if (joiner) joined.push(callMemberOf(joiner));
  }
  return { joined, left: change.removed.map(callMemberOf) };
}

export interface CallKeyringOptions {
  /** The call's SFrame cipher suite (default 4, AES_128_GCM_SHA256_128). */
  readonly sframeSuite?: SFrameSuiteId;
}

/** Rosters kept for naming the senders of late application messages (the MLS engine opens 2 past epochs). */
const ROSTER_HISTORY = 4;

export class CallKeyring {
  [INSPECT](): string {
    return redacted("CallKeyring", { epoch: this.latest?.epoch });
  }

  readonly sframeSuite: SFrameSuiteId;
  private latest: CallEpoch | undefined;
  private readonly rosters: { readonly epoch: bigint; readonly members: readonly CallMember[] }[] = [];

  constructor(options: CallKeyringOptions = {}) {
    this.sframeSuite = sframeSuite(options.sframeSuite ?? DEFAULT_SFRAME_SUITE).id;
  }

  /** The newest epoch's keys, or undefined before the first. */
  get current(): CallEpoch | undefined {
    return this.latest;
  }

  /**
   * The keys of the group's current epoch when it is newer than the last one seen (a rejoin replaces the
   * group object but always lands in a later epoch), else undefined.
   */
  async advance(group: MlsGroup): Promise<CallEpoch | undefined> {
    const epoch = group.epoch;
    if (this.latest && epoch <= this.latest.epoch) return undefined;
    // Everything is read before the first await, so all of it belongs to the same epoch.
    const myLeafIndex = group.leafIndex;
    const epochAuthenticator = group.epochAuthenticator.slice();
    const members = group.members().map(callMemberOf);
    const baseKey = mlsBaseKey(sframeSuite(this.sframeSuite), (label, context, length) => group.exportSecret(label, context, length));
    const next: CallEpoch = {
      epoch,
      myLeafIndex,
      sframeSuite: this.sframeSuite,
      baseKey: await baseKey,
      epochAuthenticator,
      safetyCode: safetyCode(epochAuthenticator),
      members,
    };
    if (this.latest && next.epoch <= this.latest.epoch) return undefined;
    this.latest = next;
    this.rosters.push({ epoch, members });
    if (this.rosters.length > ROSTER_HISTORY) this.rosters.shift();
    return next;
  }

  /** Who held a leaf in a recent epoch (leaf indices are reused, so the epoch matters). */
  memberAt(epoch: bigint, leafIndex: number): CallMember | undefined {
    return this.rosters.find((r) => r.epoch === epoch)?.members.find((m) => m.leafIndex === leafIndex);
  }
}
