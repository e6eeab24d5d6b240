import { Writer } from "../codec/writer.js";
import type { CipherSuite } from "../crypto/cipher-suite.js";
import { zeroSecret } from "./key-schedule.js";
import { encodePreSharedKeyID, type PreSharedKeyID } from "./messages.js";

/** A PSK to inject: its PreSharedKeyID and the key itself (the external PSK, or the referenced epoch's resumption_psk). */
export interface PskWithSecret {
  readonly id: PreSharedKeyID;
  readonly psk: Uint8Array;
}

/** §8.4 PSKLabel: binds each PSK to its position in the list, so reordering or dropping one changes psk_secret. */
function encodePskLabel(id: PreSharedKeyID, index: number, count: number): Uint8Array {
  const w = new Writer();
  encodePreSharedKeyID(w, id);
  return w.u16(index).u16(count).finish();
}

/**
 * §8.4 psk_secret: the PSKs chained by KDF.Extract in the order the Commit or GroupSecrets lists them.
 * No PSKs gives the all-zero vector.
 */
export async function computePskSecret(suite: CipherSuite, psks: readonly PskWithSecret[]): Promise<Uint8Array> {
  if (psks.length > 0xffff) throw new RangeError("more PSKs than PSKLabel.count can express");
  const zero = zeroSecret(suite);
  const { Nh } = suite.params;
  // The per-PSK inputs are independent; only the final chaining is sequential.
  const inputs = await Promise.all(
    psks.map(async ({ id, psk }, index) => {
      const extracted = await suite.extract(zero, psk);
      return suite.expandWithLabel(extracted, "derived psk", encodePskLabel(id, index, psks.length), Nh);
    }),
  );
  let pskSecret = zero;
  for (const input of inputs) pskSecret = await suite.extract(input, pskSecret);
  return pskSecret;
}
