/**
 * The one error type the DS answers with. `code` is a stable kebab-case string clients switch on; `extra`
 * carries structured data some codes need (`wrong-epoch` carries the current epoch and the missed entries).
 * Messages name the object and the failed check, never a secret.
 */
import type { DsErrorCode, WireError } from "./protocol.js";

export type { DsErrorCode, WireError } from "./protocol.js";

export class DsError extends Error {
  override readonly name = "DsError";
  constructor(
    readonly code: DsErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function toWireError(e: unknown): WireError {
  if (e instanceof DsError) return { ...e.extra, code: e.code, message: e.message };
  return { code: "internal", message: "internal error" };
}
