/**
 * KeyPackages across providers (MIMI's keyMaterial): a user's claim `{ user, suites }` for a user of
 * another provider goes from the requester's home DS to the target's home DS, which answers from its
 * directory exactly as for its own users: one bundle per device (KeyPackage + identity key) in one suite
 * every device supports, or `no-common-suite`. Single-use KeyPackages leave the directory as they are
 * handed out, so none is handed out twice.
 *
 * A claimed KeyPackage is reserved for the requesting provider: the target DS remembers which provider
 * got which KeyPackageRef, and delivers a Welcome for that ref only when it comes from that provider. The
 * requesting DS remembers where each ref came from, and routes the Welcome of its user's commit there once
 * the hub accepted the commit (MIMI: Welcomes follow the KeyPackageRefs).
 */
import { decode } from "../../keying/codec/reader.js";
import { toHex } from "../../keying/codec/bytes.js";
import { getCipherSuite, isCipherSuiteId } from "../../keying/crypto/index.js";
import { CredentialType, WireFormat, decodeMLSMessage, makeKeyPackageRef } from "../../keying/mls/messages.js";
import type { Principal } from "../auth.js";
import { remoteClaimer } from "../ds/claim-quota.js";
import { memberRoom } from "../ds/groups.js";
import { DsError } from "../errors.js";
import type { ClaimResult } from "../protocol.js";
import type { DsInternals } from "../server.js";
import { parse } from "../validate.js";
import type { InboundLink } from "./acceptor.js";
import { FederationError } from "./errors.js";
import { providerOfUser } from "./identity.js";
import type { PeerLink } from "./link.js";
import type { LinkSchemas } from "./schemas.js";

/** Refs remembered in each direction; the oldest are forgotten first. */
const MAX_REFS = 20_000;

interface Reservation {
  /** Providers the KeyPackage was handed to (several only for a last-resort one). */
  readonly requesters: Set<string>;
  readonly member: string;
}

export interface KeyPackageFederationOptions {
  readonly ds: DsInternals;
  readonly domain: string;
  readonly schemas: LinkSchemas;
  readonly link: (peer: string) => PeerLink;
  /** Records the hub of a group a local device was welcomed into. */
  readonly learnHub: (groupId: string, hub: string) => void;
  readonly log: (line: string) => void;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export class KeyPackageFederation {
  private readonly reserved = new Map<string, Reservation>();
  private readonly obtained = new Map<string, string>();

  constructor(private readonly o: KeyPackageFederationOptions) {}

  /** A local user's claim for a user of `provider`. */
  async claimRemote(principal: Principal, provider: string, user: string, suites: readonly number[]): Promise<ClaimResult> {
    const reply = await this.o.link(provider).request("fed:claim", { requester: principal.user, user, suites: [...suites] }, { once: true });
    const result = parse(this.o.schemas.claimResult, reply);
    if (result.user !== user || !suites.includes(result.suite)) throw new FederationError("invalid-payload", "the claim answer is for another user or suite", provider);
    for (const bundle of result.devices) {
      const ref = await this.refOf(bundle.keyPackage, result.suite, `${user}/${bundle.device}`);
      if (!ref) throw new FederationError("invalid-payload", `the KeyPackage of ${user}/${bundle.device} does not match its bundle`, provider);
      remember(this.obtained, ref, provider);
    }
    return result;
  }

  /** `fed:claim`: a peer's user claims the KeyPackages of a user of this provider. */
  async serveClaim(link: InboundLink, payload: unknown): Promise<Record<string, unknown>> {
    const { requester, user, suites } = parse(this.o.schemas.claim, payload);
    if (providerOfUser(requester) !== link.peer) throw new FederationError("forbidden-user", `${link.peer} cannot claim for ${requester}`);
    if (providerOfUser(user) !== this.o.domain) throw new DsError("unknown-user", `${user} is not a user of ${this.o.domain}`);
    // The quota counts per remote user: the peer vouches for who asks (checked above).
    const result = await this.o.ds.directory.claim(user, suites, remoteClaimer(link.peer, requester));
    for (const bundle of result.devices) {
      const member = `${user}/${bundle.device}`;
      const ref = await this.refOf(bundle.keyPackage, result.suite, member);
      if (!ref) continue;
      const r = this.reserved.get(ref);
      if (r) r.requesters.add(link.peer);
      else remember(this.reserved, ref, { requesters: new Set([link.peer]), member });
    }
    this.o.log(`federation: ${link.peer} claimed ${result.devices.length} KeyPackage(s) of ${user} for ${requester}`);
    return { ...result };
  }

  /** After the hub accepted a commit of a local user: its Welcome goes to the providers of the added devices. */
  async routeWelcome(groupId: string, hub: string, seq: number, welcome: Uint8Array): Promise<void> {
    const byProvider = new Set<string>();
    for (const ref of refsOfWelcome(welcome)) {
      const provider = this.obtained.get(ref);
      if (provider) byProvider.add(provider);
    }
    await Promise.all(
      [...byProvider].map((provider) =>
        this.o
          .link(provider)
          .request("fed:welcome", { groupId, hub, seq, welcome }, { once: true })
          .catch((e) => this.o.log(`federation: Welcome to ${provider} not delivered: ${String(e)}`)),
      ),
    );
  }

  /** `fed:welcome`: delivered to the local devices whose KeyPackages that peer claimed. */
  serveWelcome(link: InboundLink, payload: unknown, isHub: (domain: string) => boolean): Record<string, unknown> {
    const { groupId, hub, seq, welcome } = parse(this.o.schemas.welcome, payload);
    if (!isHub(hub)) throw new FederationError("unknown-provider", `${hub} is not a known provider`);
    let delivered = 0;
    for (const ref of refsOfWelcome(welcome)) {
      const r = this.reserved.get(ref);
      if (!r?.requesters.has(link.peer)) continue;
      if (hub !== this.o.domain) this.o.learnHub(groupId, hub);
      this.o.ds.io.to(memberRoom(r.member)).emit("group:welcome", { groupId, seq, welcome });
      delivered++;
    }
    return { delivered };
  }

  /** The KeyPackageRef, if the KeyPackage is one of `suite` whose credential names `member`. */
  private async refOf(bytes: Uint8Array, suite: number, member: string): Promise<string | undefined> {
    try {
      const m = decode(decodeMLSMessage, bytes);
      if (m.wireFormat !== WireFormat.mlsKeyPackage || m.keyPackage.cipherSuite !== suite || !isCipherSuiteId(suite)) return undefined;
      const credential = m.keyPackage.leafNode.credential;
      if (credential.credentialType !== CredentialType.basic || utf8Decoder.decode(credential.identity) !== member) return undefined;
      return toHex(await makeKeyPackageRef(await getCipherSuite(suite, this.o.ds.provider), m.keyPackage));
    } catch {
      return undefined;
    }
  }
}

function refsOfWelcome(bytes: Uint8Array): string[] {
  try {
    const m = decode(decodeMLSMessage, bytes);
    return m.wireFormat === WireFormat.mlsWelcome ? m.welcome.secrets.map((s) => toHex(s.newMember)) : [];
  } catch {
    return [];
  }
}

function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > MAX_REFS) map.delete(map.keys().next().value!);
}
