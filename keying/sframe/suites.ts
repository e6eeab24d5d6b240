import { SFrameError } from "./errors.js";

/** RFC 9605 §4.5 / §8.1: the five cipher suites and their constants. */
export type SFrameSuiteId = 1 | 2 | 3 | 4 | 5;

export interface SFrameSuite {
  readonly id: SFrameSuiteId;
  readonly name: string;
  /** "aes-ctr-hmac": the §4.5.1 encrypt-then-MAC AEAD built from AES-CTR and a truncated HMAC. */
  readonly aead: "aes-gcm" | "aes-ctr-hmac";
  readonly hash: "SHA-256" | "SHA-512";
  readonly Nh: number;
  /** AES key length. In an AES-CTR+HMAC key the AES key is the first Nka bytes and the HMAC key the rest. */
  readonly Nka: number;
  readonly Nk: number;
  readonly Nn: number;
  readonly Nt: number;
}

export const SFRAME_SUITES: Readonly<Record<SFrameSuiteId, SFrameSuite>> = {
  1: { id: 1, name: "AES_128_CTR_HMAC_SHA256_80", aead: "aes-ctr-hmac", hash: "SHA-256", Nh: 32, Nka: 16, Nk: 48, Nn: 12, Nt: 10 },
  2: { id: 2, name: "AES_128_CTR_HMAC_SHA256_64", aead: "aes-ctr-hmac", hash: "SHA-256", Nh: 32, Nka: 16, Nk: 48, Nn: 12, Nt: 8 },
  3: { id: 3, name: "AES_128_CTR_HMAC_SHA256_32", aead: "aes-ctr-hmac", hash: "SHA-256", Nh: 32, Nka: 16, Nk: 48, Nn: 12, Nt: 4 },
  4: { id: 4, name: "AES_128_GCM_SHA256_128", aead: "aes-gcm", hash: "SHA-256", Nh: 32, Nka: 16, Nk: 16, Nn: 12, Nt: 16 },
  5: { id: 5, name: "AES_256_GCM_SHA512_128", aead: "aes-gcm", hash: "SHA-512", Nh: 64, Nka: 32, Nk: 32, Nn: 12, Nt: 16 },
};

export const SFRAME_SUITE_IDS: readonly SFrameSuiteId[] = [1, 2, 3, 4, 5];

/** BRIEF decision 5: AES_128_GCM_SHA256_128 unless the call negotiates otherwise. */
export const DEFAULT_SFRAME_SUITE: SFrameSuiteId = 4;

export function sframeSuite(id: number): SFrameSuite {
  const suite = SFRAME_SUITES[id as SFrameSuiteId];
  if (!suite) throw new SFrameError("unsupported-suite", `SFrame cipher suite ${id}`);
  return suite;
}
