import { CryptoError, type CryptoErrorCode } from "./errors.js";

/**
 * Backends throw whatever their library throws (OpenSSL errors, DOMException, plain Error, with
 * messages we do not control). These wrappers let our own CryptoErrors through and replace any
 * other failure by a CryptoError with a fixed message, so nothing foreign reaches callers.
 */

export function guard<T>(code: CryptoErrorCode, detail: string, run: () => T): T {
  try {
    return run();
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    throw new CryptoError(code, detail);
  }
}

export async function guardAsync<T>(code: CryptoErrorCode, detail: string, run: () => T | Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    throw new CryptoError(code, detail);
  }
}

/** For verification: a signature the library cannot even parse is simply not valid. */
export async function falseOnError(run: () => boolean | Promise<boolean>): Promise<boolean> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof CryptoError) throw e;
    return false;
  }
}
