/**
 * Small schema validators for socket payloads. Every event handler parses its payload through one of these
 * before touching it: unknown keys, wrong types and out-of-range values are `invalid-payload`, byte strings
 * and lists longer than their limit are `payload-too-large`. Byte fields arrive as Buffer (Node clients) or
 * ArrayBuffer (browsers) and leave as a Uint8Array.
 */
import { DsError } from "./errors.js";

export type Schema<T> = (value: unknown, path: string) => T;
export type Infer<S> = S extends Schema<infer T> ? T : never;

function invalid(path: string, what: string): DsError {
  return new DsError("invalid-payload", `${path || "payload"}: ${what}`);
}

export function str(opts: { max: number; min?: number; pattern?: RegExp }): Schema<string> {
  return (v, path) => {
    if (typeof v !== "string") throw invalid(path, "expected a string");
    if (v.length > opts.max) throw new DsError("payload-too-large", `${path}: longer than ${opts.max} characters`);
    if (v.length < (opts.min ?? 0)) throw invalid(path, `shorter than ${opts.min} characters`);
    if (opts.pattern && !opts.pattern.test(v)) throw invalid(path, "has a disallowed format");
    return v;
  };
}

export function int(opts: { min: number; max: number }): Schema<number> {
  return (v, path) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw invalid(path, "expected an integer");
    if (v < opts.min || v > opts.max) throw invalid(path, `outside ${opts.min}..${opts.max}`);
    return v;
  };
}

export function bool(): Schema<boolean> {
  return (v, path) => {
    if (typeof v !== "boolean") throw invalid(path, "expected a boolean");
    return v;
  };
}

export function bytes(opts: { max: number; min?: number }): Schema<Uint8Array> {
  return (v, path) => {
    let out: Uint8Array;
    if (v instanceof Uint8Array) out = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    else if (v instanceof ArrayBuffer) out = new Uint8Array(v);
    else throw invalid(path, "expected binary data");
    if (out.length > opts.max) throw new DsError("payload-too-large", `${path}: ${out.length} bytes, limit ${opts.max}`);
    if (out.length < (opts.min ?? 1)) throw invalid(path, "too short");
    return out;
  };
}

export function arr<T>(item: Schema<T>, opts: { max: number; min?: number }): Schema<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) throw invalid(path, "expected a list");
    if (v.length > opts.max) throw new DsError("payload-too-large", `${path}: more than ${opts.max} items`);
    if (v.length < (opts.min ?? 0)) throw invalid(path, `fewer than ${opts.min} items`);
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };
}

export function optional<T>(s: Schema<T>): Schema<T | undefined> {
  return (v, path) => (v === undefined || v === null ? undefined : s(v, path));
}

type Shape = Record<string, Schema<unknown>>;
export type ObjectOf<S extends Shape> = { [K in keyof S]: Infer<S[K]> };

/** A plain object with exactly these keys (missing optional keys are undefined; unknown keys are refused). */
export function obj<S extends Shape>(shape: S): Schema<ObjectOf<S>> {
  return (v, path) => {
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof ArrayBuffer) throw invalid(path, "expected an object");
    for (const k of Object.keys(v)) if (!Object.hasOwn(shape, k)) throw invalid(path, `unknown field "${k.slice(0, 32)}"`);
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(shape)) out[k] = shape[k]!((v as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
    return out as ObjectOf<S>;
  };
}

export function parse<T>(schema: Schema<T>, value: unknown): T {
  return schema(value, "");
}

/** Common field shapes. */
export const ROOM = str({ min: 1, max: 128, pattern: /^[\p{L}\p{N}._~@:+-]+$/u });
export const GROUP_ID = str({ min: 2, max: 256, pattern: /^(?:[0-9a-f]{2})+$/ });
export const SEQ = int({ min: 0, max: Number.MAX_SAFE_INTEGER });
export const SUITE = int({ min: 1, max: 0xffff });
