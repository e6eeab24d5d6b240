import { getCipherSuite } from "../../keying/crypto/index.js";
import { mlsExporter } from "../../keying/mls/key-schedule.js";
import type { MlsExporter } from "../../keying/sframe/index.js";

/** The MLS-Exporter of an epoch whose exporter_secret is 32 bytes of `secretByte` (suite 1). */
export async function realExporter(secretByte: number): Promise<MlsExporter> {
  const suite = await getCipherSuite(1);
  const exporterSecret = new Uint8Array(32).fill(secretByte);
  return (label, context, length) => mlsExporter(suite, exporterSecret, label, context, length);
}
