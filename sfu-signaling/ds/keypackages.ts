/**
 * The KeyPackage directory, in the shape of MIMI's keyMaterial exchange: devices upload KeyPackages; anyone
 * authenticated claims `{ user, suites }` and gets one bundle per device of that user (KeyPackage plus the
 * device's identity, i.e. signature, key) in one suite every device with material supports.
 *
 * The DS checks an upload the way a group would (§10.1 without a group: signatures, lifetime, leaf) and
 * that its credential names the uploading device, so a claim never returns a KeyPackage someone planted for
 * another user. Single-use KeyPackages are deleted as they are handed out; a device's last-resort one is
 * handed out only when it has nothing else left. A claimer may take another user's single-use KeyPackages
 * only a few times per window (claim-quota.ts), so it cannot drain them.
 */
import { decode } from "../../keying/codec/reader.js";
import { toHex } from "../../keying/codec/bytes.js";
import { MlsDecodeError } from "../../keying/codec/errors.js";
import { getCipherSuite, isCipherSuiteId, type CryptoProvider } from "../../keying/crypto/index.js";
import { MlsValidationError } from "../../keying/mls/errors.js";
import { isLastResort, verifyKeyPackage } from "../../keying/mls/key-package.js";
import { CredentialType, LeafNodeSource, WireFormat, decodeMLSMessage, makeKeyPackageRef } from "../../keying/mls/messages.js";
import { memberId, type Principal } from "../auth.js";
import { DsError } from "../errors.js";
import type { ClaimResult, DeviceBundle, SuiteInventory } from "../protocol.js";
import type { Store, StoredKeyPackage } from "../store/store.js";
import { ClaimQuota, type ClaimQuotaOptions } from "./claim-quota.js";

/**
 * A Socket.IO packet carries at most 10 binary attachments (socket.io-parser's default, enforced by every
 * receiver), and a claim answers with one KeyPackage per device: hence the device cap.
 */
export const MAX_DEVICES_PER_USER = 10;

export interface KeyPackageDirectoryOptions {
  /** Stored KeyPackages per device (all suites, last-resort ones included), so a device cannot fill the disk. */
  readonly maxPerDevice: number;
  readonly claimQuota: ClaimQuotaOptions;
  /** Seconds since the Unix epoch. */
  readonly now?: () => number;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

export class KeyPackageDirectory {
  private readonly now: () => number;
  private readonly quota: ClaimQuota;

  constructor(
    private readonly store: Store,
    private readonly provider: CryptoProvider,
    private readonly options: KeyPackageDirectoryOptions,
  ) {
    this.now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.quota = new ClaimQuota(options.claimQuota);
  }

  /** All-or-nothing: one bad KeyPackage refuses the whole upload. Returns how many were new. */
  async upload(principal: Principal, messages: readonly Uint8Array[]): Promise<number> {
    const records = await Promise.all(messages.map((m, i) => this.check(principal, m, i)));
    const devices = await this.store.keyPackageInventory(principal.user, this.now());
    if (devices.length >= MAX_DEVICES_PER_USER && !devices.some((d) => d.device === principal.device)) {
      throw new DsError("too-many-devices", `a user may publish KeyPackages for at most ${MAX_DEVICES_PER_USER} devices`);
    }
    const mine = devices.find((d) => d.device === principal.device)?.suites ?? [];
    const held = mine.reduce((n, s) => n + s.available + (s.lastResort ? 1 : 0), 0);
    const newLastResortSuites = new Set(records.filter((r) => r.lastResort).map((r) => r.suite));
    if (held + records.length - newLastResortSuites.size > this.options.maxPerDevice) {
      throw new DsError("too-many-key-packages", `a device may keep at most ${this.options.maxPerDevice} KeyPackages`);
    }
    return this.store.putKeyPackages(records);
  }

  private async check(principal: Principal, bytes: Uint8Array, i: number): Promise<StoredKeyPackage> {
    let message;
    try {
      message = decode(decodeMLSMessage, bytes);
    } catch (e) {
      if (e instanceof MlsDecodeError) throw new DsError("malformed-message", `keyPackages[${i}]: ${e.message}`);
      throw e;
    }
    if (message.wireFormat !== WireFormat.mlsKeyPackage) throw new DsError("invalid-key-package", `keyPackages[${i}] is not a KeyPackage`);
    const kp = message.keyPackage;
    if (!isCipherSuiteId(kp.cipherSuite)) throw new DsError("unsupported-suite", `keyPackages[${i}] uses cipher suite ${kp.cipherSuite}`);
    const suite = await getCipherSuite(kp.cipherSuite, this.provider);
    try {
      await verifyKeyPackage(suite, kp, BigInt(this.now()));
    } catch (e) {
      if (e instanceof MlsValidationError) throw new DsError("invalid-key-package", `keyPackages[${i}]: ${e.message}`);
      throw e;
    }
    const credential = kp.leafNode.credential;
    const identity = credential.credentialType === CredentialType.basic ? safeUtf8(credential.identity) : undefined;
    if (identity !== memberId(principal)) throw new DsError("wrong-identity", `keyPackages[${i}]: the credential does not name the authenticated device`);
    if (kp.leafNode.leafNodeSource !== LeafNodeSource.keyPackage) throw new DsError("invalid-key-package", `keyPackages[${i}]: leaf source`);
    return {
      ref: toHex(await makeKeyPackageRef(suite, kp)),
      user: principal.user,
      device: principal.device,
      suite: kp.cipherSuite,
      lastResort: isLastResort(kp),
      notAfter: Number(kp.leafNode.lifetime.notAfter > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : kp.leafNode.lifetime.notAfter),
      keyPackage: bytes,
      identityKey: kp.leafNode.signatureKey,
    };
  }

  /** What the device itself still has stored, so it knows when to top up. */
  async inventory(principal: Principal): Promise<readonly SuiteInventory[]> {
    const all = await this.store.keyPackageInventory(principal.user, this.now());
    return all.find((d) => d.device === principal.device)?.suites ?? [];
  }

  /**
   * One bundle per device of `user`, in the first of `suites` (the requester's preference order) that every
   * device still holding material supports. `unknown-user` when the user never uploaded anything, `key-packages-exhausted` when nothing is left,
   * `no-common-suite` when no requested suite is held by all of those devices.
   *
   * `claimer` names who asks (a local user, or a remote provider's user) for the claim quota; undefined
   * for a user claiming its own devices' KeyPackages, which is exempt. A claim that took only last-resort
   * KeyPackages does not count; `claim-quota-exceeded` once the claimer used up its quota for this user.
   */
  async claim(user: string, suites: readonly number[], claimer: string | undefined): Promise<ClaimResult> {
    const now = this.now();
    const inventory = await this.store.keyPackageInventory(user, now);
    if (inventory.length === 0) throw new DsError("unknown-user", "no device of this user has published KeyPackages");
    const holders = inventory.filter((d) => d.suites.some((s) => s.available > 0 || s.lastResort));
    const has = (d: (typeof inventory)[number], suite: number) => d.suites.some((s) => s.suite === suite && (s.available > 0 || s.lastResort));
    if (holders.length === 0) throw new DsError("key-packages-exhausted", "no device of this user has KeyPackages left");
    const suite = suites.find((s) => holders.every((d) => has(d, s)));
    if (suite === undefined) {
      const offered = [...new Set(holders.flatMap((d) => d.suites.map((s) => s.suite)))].sort((a, b) => a - b);
      throw new DsError("no-common-suite", "no requested cipher suite is supported by every device of this user", { offered });
    }
    // Reserved before taking, so concurrent claims of one claimer cannot all pass the check.
    const release = claimer === undefined ? undefined : this.quota.take(claimer, user);
    const devices: DeviceBundle[] = [];
    const exhausted: string[] = [];
    try {
      for (const d of inventory) {
        const kp = await this.store.takeKeyPackage(user, d.device, suite, now);
        if (!kp) {
          exhausted.push(d.device);
          continue;
        }
        devices.push({ device: d.device, keyPackage: kp.keyPackage, identityKey: toHex(kp.identityKey), lastResort: kp.lastResort });
      }
    } finally {
      if (!devices.some((d) => !d.lastResort)) release?.();
    }
    return { user, suite, devices, exhausted };
  }
}

function safeUtf8(b: Uint8Array): string | undefined {
  try {
    return utf8Decoder.decode(b);
  } catch {
    return undefined;
  }
}
