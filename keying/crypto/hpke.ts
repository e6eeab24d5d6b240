import { bytesEqual, concatBytes, utf8 } from "../codec/bytes.js";
import type { HpkeCiphertext, KeyPair } from "./cipher-suite.js";
import { AEADS, HASHES, KEMS, isUncompressedPoint, type KemParams } from "./algorithms.js";
import { CryptoError } from "./errors.js";
import type { Aead, DhGroup, HpkeScheme, Kdf } from "./primitives.js";
import type { AeadAlgorithm, HashAlgorithm, KemAlgorithm } from "./suites.js";

/**
 * RFC 9180 HPKE, base mode only (MLS never uses PSK or Auth modes), over a DH group, two
 * HKDFs (the KEM's and the key schedule's) and an AEAD. Single-shot: sequence number 0, so
 * the nonce is base_nonce itself.
 */

const EMPTY = new Uint8Array(0);
const HPKE_V1 = utf8("HPKE-v1");
const MODE_BASE = 0x00;
const label = {
  eaePrk: utf8("eae_prk"),
  sharedSecret: utf8("shared_secret"),
  pskIdHash: utf8("psk_id_hash"),
  infoHash: utf8("info_hash"),
  secret: utf8("secret"),
  key: utf8("key"),
  baseNonce: utf8("base_nonce"),
  exp: utf8("exp"),
  sec: utf8("sec"),
  dkpPrk: utf8("dkp_prk"),
  sk: utf8("sk"),
  candidate: utf8("candidate"),
};

function i2osp(n: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--, n >>>= 8) out[i] = n & 0xff;
  return out;
}

function os2ip(bytes: Uint8Array): bigint {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

/** RFC 9180 §7.1.4: an all-zero X25519/X448 output means a small-order public key. */
function checkDh(z: Uint8Array): Uint8Array {
  if (z.every((b) => b === 0)) throw new CryptoError("invalid-public-key", "DH produced the all-zero value");
  return z;
}

/** Labeled Extract/Expand bound to one suite_id (§4). */
class Labeled {
  /** `"HPKE-v1" || suite_id || label` for each label: the constant part of every labeled input. */
  private readonly prefixes = new Map<Uint8Array, Uint8Array>();

  constructor(
    private readonly kdf: Kdf,
    private readonly suiteId: Uint8Array,
  ) {}

  private prefix(lbl: Uint8Array): Uint8Array {
    let p = this.prefixes.get(lbl);
    if (!p) this.prefixes.set(lbl, (p = concatBytes(HPKE_V1, this.suiteId, lbl)));
    return p;
  }

  extract(salt: Uint8Array, lbl: Uint8Array, ikm: Uint8Array) {
    return this.kdf.extract(salt, concatBytes(this.prefix(lbl), ikm));
  }

  expand(prk: Uint8Array, lbl: Uint8Array, info: Uint8Array, length: number) {
    if (length > 0xffff) throw new CryptoError("invalid-length", `HPKE expand length ${length}`);
    return this.kdf.expand(prk, concatBytes(i2osp(length, 2), this.prefix(lbl), info), length);
  }
}

export interface HpkeAlgorithms {
  readonly kem: KemAlgorithm;
  readonly kdf: HashAlgorithm;
  readonly aead: AeadAlgorithm;
}

export interface HpkeParts {
  readonly dh: DhGroup;
  /** HKDF with the KEM's hash. */
  readonly kemKdf: Kdf;
  /** HKDF with the suite's hash. */
  readonly kdf: Kdf;
  readonly aead: Aead;
}

interface Context {
  readonly secret: Uint8Array;
  readonly keyScheduleContext: Uint8Array;
}

export class Hpke implements HpkeScheme {
  private readonly kemParams: KemParams;
  private readonly kemLabeled: Labeled;
  private readonly labeled: Labeled;
  private readonly Nk: number;
  private readonly Nn: number;
  private readonly Nh: number;
  private pskIdHash: Promise<Uint8Array> | undefined;
  /** The last info and its key_schedule_context: an UpdatePath seals one path secret to many keys under one info. */
  private lastInfo: { readonly info: Uint8Array; readonly context: Promise<Uint8Array> } | undefined;

  constructor(
    algorithms: HpkeAlgorithms,
    private readonly parts: HpkeParts,
  ) {
    this.kemParams = KEMS[algorithms.kem];
    const aead = AEADS[algorithms.aead];
    this.Nk = aead.Nk;
    this.Nn = aead.Nn;
    this.Nh = HASHES[algorithms.kdf].Nh;
    const kemId = i2osp(this.kemParams.id, 2);
    this.kemLabeled = new Labeled(parts.kemKdf, concatBytes(utf8("KEM"), kemId));
    this.labeled = new Labeled(
      parts.kdf,
      concatBytes(utf8("HPKE"), kemId, i2osp(HASHES[algorithms.kdf].kdfId, 2), i2osp(aead.id, 2)),
    );
  }

  async hpkeSeal(publicKey: Uint8Array, info: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<HpkeCiphertext> {
    const { sharedSecret, enc } = await this.encap(publicKey);
    const ctx = await this.keySchedule(sharedSecret, info);
    const [key, nonce] = await Promise.all([this.aeadKey(ctx), this.baseNonce(ctx)]);
    return { kemOutput: enc, ciphertext: await this.parts.aead.seal(key, nonce, aad, plaintext) };
  }

  async hpkeOpen(privateKey: Uint8Array, kemOutput: Uint8Array, info: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    const sharedSecret = await this.decap(kemOutput, privateKey);
    const ctx = await this.keySchedule(sharedSecret, info);
    const [key, nonce] = await Promise.all([this.aeadKey(ctx), this.baseNonce(ctx)]);
    try {
      return await this.parts.aead.open(key, nonce, aad, ciphertext);
    } catch (e) {
      if (e instanceof CryptoError && e.code !== "aead-open-failed") throw e;
      throw new CryptoError("hpke-open-failed", "HPKE ciphertext did not authenticate");
    }
  }

  async hpkeExportSender(publicKey: Uint8Array, info: Uint8Array, exporterContext: Uint8Array, length: number) {
    const { sharedSecret, enc } = await this.encap(publicKey);
    const secret = await this.export(await this.keySchedule(sharedSecret, info), exporterContext, length);
    return { kemOutput: enc, secret };
  }

  async hpkeExportReceiver(privateKey: Uint8Array, kemOutput: Uint8Array, info: Uint8Array, exporterContext: Uint8Array, length: number) {
    const sharedSecret = await this.decap(kemOutput, privateKey);
    return this.export(await this.keySchedule(sharedSecret, info), exporterContext, length);
  }

  /** DeriveKeyPair (§7.1.3): X25519/X448 take the expanded bytes as they are; NIST curves reject-sample. */
  async hpkeDeriveKeyPair(ikm: Uint8Array): Promise<KeyPair> {
    const { Nsk, order, bitmask } = this.kemParams;
    const dkpPrk = await this.kemLabeled.extract(EMPTY, label.dkpPrk, ikm);
    if (order === undefined || bitmask === undefined) {
      const privateKey = await this.kemLabeled.expand(dkpPrk, label.sk, EMPTY, Nsk);
      return { privateKey, publicKey: await this.parts.dh.publicKey(privateKey) };
    }
    for (let counter = 0; counter < 256; counter++) {
      const bytes = await this.kemLabeled.expand(dkpPrk, label.candidate, i2osp(counter, 1), Nsk);
      bytes[0]! &= bitmask;
      const sk = os2ip(bytes);
      if (sk !== 0n && sk < order) return { privateKey: bytes, publicKey: await this.parts.dh.publicKey(bytes) };
    }
    throw new CryptoError("invalid-private-key", "DeriveKeyPair found no valid scalar");
  }

  async hpkeGenerateKeyPair(): Promise<KeyPair> {
    return this.parts.dh.generateKeyPair();
  }

  private checkPublicKey(publicKey: Uint8Array): void {
    const { Npk, order } = this.kemParams;
    const ok = order === undefined ? publicKey.length === Npk : isUncompressedPoint(publicKey, Npk);
    if (!ok) throw new CryptoError("invalid-public-key", `HPKE public key must be ${Npk} bytes${order === undefined ? "" : " (uncompressed point)"}`);
  }

  private async dh(privateKey: Uint8Array, publicKey: Uint8Array): Promise<Uint8Array> {
    return checkDh(await this.parts.dh.dh(privateKey, publicKey));
  }

  private async extractAndExpand(dh: Uint8Array, kemContext: Uint8Array): Promise<Uint8Array> {
    const eaePrk = await this.kemLabeled.extract(EMPTY, label.eaePrk, dh);
    return this.kemLabeled.expand(eaePrk, label.sharedSecret, kemContext, this.kemParams.Nsecret);
  }

  private async encap(publicKey: Uint8Array): Promise<{ sharedSecret: Uint8Array; enc: Uint8Array }> {
    this.checkPublicKey(publicKey);
    const group = this.parts.dh;
    let enc: Uint8Array;
    let dh: Uint8Array;
    if (group.ephemeralDh) {
      const e = await group.ephemeralDh(publicKey);
      enc = e.publicKey;
      dh = checkDh(e.dh);
    } else {
      const ephemeral = await group.generateKeyPair();
      enc = ephemeral.publicKey;
      dh = await this.dh(ephemeral.privateKey, publicKey);
    }
    return { sharedSecret: await this.extractAndExpand(dh, concatBytes(enc, publicKey)), enc };
  }

  private async decap(enc: Uint8Array, privateKey: Uint8Array): Promise<Uint8Array> {
    this.checkPublicKey(enc);
    if (privateKey.length !== this.kemParams.Nsk) {
      throw new CryptoError("invalid-private-key", `HPKE private key must be ${this.kemParams.Nsk} bytes`);
    }
    const [dh, publicKey] = await Promise.all([this.dh(privateKey, enc), this.parts.dh.publicKey(privateKey)]);
    return this.extractAndExpand(dh, concatBytes(enc, publicKey));
  }

  private async keySchedule(sharedSecret: Uint8Array, info: Uint8Array): Promise<Context> {
    if (!this.lastInfo || !bytesEqual(this.lastInfo.info, info)) {
      // psk_id_hash is the same for every base-mode context of this suite.
      this.pskIdHash ??= Promise.resolve(this.labeled.extract(EMPTY, label.pskIdHash, EMPTY));
      const context = Promise.all([this.pskIdHash, this.labeled.extract(EMPTY, label.infoHash, info)]).then(([pskIdHash, infoHash]) =>
        concatBytes(Uint8Array.of(MODE_BASE), pskIdHash, infoHash),
      );
      this.lastInfo = { info: info.slice(), context };
    }
    const [keyScheduleContext, secret] = await Promise.all([this.lastInfo.context, this.labeled.extract(sharedSecret, label.secret, EMPTY)]);
    return { secret, keyScheduleContext };
  }

  private aeadKey(ctx: Context) {
    return this.labeled.expand(ctx.secret, label.key, ctx.keyScheduleContext, this.Nk);
  }

  private baseNonce(ctx: Context) {
    return this.labeled.expand(ctx.secret, label.baseNonce, ctx.keyScheduleContext, this.Nn);
  }

  private async export(ctx: Context, exporterContext: Uint8Array, length: number): Promise<Uint8Array> {
    if (!Number.isInteger(length) || length < 0 || length > 255 * this.Nh) {
      throw new CryptoError("invalid-length", `HPKE export length ${length} out of range`);
    }
    const exporterSecret = await this.labeled.expand(ctx.secret, label.exp, ctx.keyScheduleContext, this.Nh);
    return this.labeled.expand(exporterSecret, label.sec, exporterContext, length);
  }
}
