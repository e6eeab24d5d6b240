/**
 * Objects that hold key material show only a harmless summary when printed: Node's util.inspect (hence
 * console.log and most loggers) calls the method under this symbol instead of listing the fields. A
 * registered symbol, so this needs no node: import and is inert in browsers and workers.
 */
export const INSPECT: unique symbol = Symbol.for("nodejs.util.inspect.custom") as never;

/** `Name { a: 1, b: 2, [secrets redacted] }`; `fields` must hold public values only. */
export function redacted(name: string, fields: Record<string, unknown> = {}): string {
  const shown = Object.entries(fields).map(([k, v]) => `${k}: ${String(v)}`);
  return `${name} { ${[...shown, "[secrets redacted]"].join(", ")} }`;
}
