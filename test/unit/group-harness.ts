/**
 * A tiny in-memory delivery service for the group tests: members keep MlsGroups, every handshake goes to
 * every other member, and each step checks that all members agree on the epoch, its authenticator, an
 * exporter value and the public tree.
 */
import { expect } from "vitest";
import { toHex, utf8 } from "../../keying/codec/bytes.js";
import type { CryptoProvider } from "../../keying/crypto/cipher-suite.js";
import type { CipherSuiteId } from "../../keying/crypto/index.js";
import { MlsGroup, type CommitOutput, type CommitRequest, type ProcessedMessage, type SigningIdentity } from "../../keying/mls/group.js";
import type { ExternalPsk, GroupState } from "../../keying/mls/group-state.js";
import type { GroupPolicy } from "../../keying/mls/policy.js";
import type { Extension } from "../../keying/mls/messages.js";

export interface Participant {
  readonly name: string;
  readonly identity: SigningIdentity;
  group: MlsGroup;
}

export interface HarnessOptions {
  readonly provider?: CryptoProvider;
  readonly cipherSuite?: CipherSuiteId;
  readonly extensions?: Extension[];
  readonly policy?: GroupPolicy;
  readonly handshakeWireFormat?: "public" | "private";
}

/** The private state of a group, for tests that forge messages a real member could send. */
export function stateOf(group: MlsGroup): GroupState {
  return (group as unknown as { state: GroupState }).state;
}

export class Harness {
  readonly members: Participant[] = [];
  /** External PSKs new members hold when they join by Welcome. */
  joinPsks: ExternalPsk[] = [];

  private constructor(readonly options: HarnessOptions) {}

  static async start(name: string, options: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness(options);
    const identity = await h.identity(name);
    const group = await MlsGroup.create({ identity, ...h.groupOptions(), ...(options.extensions ? { extensions: options.extensions } : {}) });
    h.members.push({ name, identity, group });
    return h;
  }

  /** The suite and provider every identity, KeyPackage and group of this harness uses. */
  private suiteOptions() {
    const o = this.options;
    return { ...(o.provider ? { provider: o.provider } : {}), ...(o.cipherSuite ? { cipherSuite: o.cipherSuite } : {}) };
  }

  groupOptions() {
    const o = this.options;
    return {
      ...this.suiteOptions(),
      ...(o.policy ? { policy: o.policy } : {}),
      ...(o.handshakeWireFormat ? { handshakeWireFormat: o.handshakeWireFormat } : {}),
    };
  }

  identity(name: string): Promise<SigningIdentity> {
    return MlsGroup.generateIdentity(utf8(name), this.suiteOptions());
  }

  async keyPackage(name: string) {
    const identity = await this.identity(name);
    const kp = await MlsGroup.generateKeyPackage(identity, this.suiteOptions());
    return { name, identity, ...kp };
  }

  get(name: string): Participant {
    const p = this.members.find((m) => m.name === name);
    if (!p) throw new Error(`no member ${name}`);
    return p;
  }

  /** Delivers a message to every member except `from`; returns their results by name. */
  async broadcast(from: string | undefined, message: Uint8Array): Promise<Map<string, ProcessedMessage>> {
    const out = new Map<string, ProcessedMessage>();
    for (const m of this.members) if (m.name !== from) out.set(m.name, await m.group.processMessage(message));
    return out;
  }

  /** Commit by `committer`, accepted by the DS: everyone processes it, Welcome joiners join, removed members leave. */
  async commit(committer: string, request: CommitRequest = {}, joiners: Awaited<ReturnType<Harness["keyPackage"]>>[] = []): Promise<CommitOutput> {
    const c = this.get(committer);
    const out = await c.group.commit(request);
    const own = await c.group.processMessage(out.commit);
    expect(own.kind === "commit" && own.own).toBe(true);
    const results = await this.broadcast(committer, out.commit);
    for (const [name, r] of results) {
      if (r.kind === "commit" && r.removedSelf) this.members.splice(this.members.findIndex((m) => m.name === name), 1);
    }
    for (const j of joiners) {
      const group = await MlsGroup.joinFromWelcome({ welcome: out.welcome!, keyPackage: j.bundle, externalPsks: this.joinPsks, ...this.groupOptions() });
      this.members.push({ name: j.name, identity: j.identity, group });
    }
    await this.checkAgreement();
    return out;
  }

  /** Adds the named new members in one commit by `committer`. */
  async add(committer: string, names: string[], request: CommitRequest = {}): Promise<CommitOutput> {
    const kps = await Promise.all(names.map((n) => this.keyPackage(n)));
    return this.commit(committer, { ...request, add: kps.map((k) => k.message) }, kps);
  }

  async checkAgreement(): Promise<void> {
    const [first, ...rest] = this.members;
    const exported = toHex(await first!.group.exportSecret("test", utf8("ctx"), 32));
    const tree = toHex(first!.group.ratchetTree());
    for (const m of rest) {
      expect(m.group.epoch, `${m.name} epoch`).toBe(first!.group.epoch);
      expect(toHex(m.group.epochAuthenticator), `${m.name} epoch authenticator`).toBe(toHex(first!.group.epochAuthenticator));
      expect(toHex(await m.group.exportSecret("test", utf8("ctx"), 32)), `${m.name} exporter`).toBe(exported);
      expect(toHex(m.group.ratchetTree()), `${m.name} tree`).toBe(tree);
    }
    for (const m of this.members) expect(toHex(m.group.member(m.group.leafIndex)!.identity)).toBe(toHex(utf8(m.name)));
  }
}
