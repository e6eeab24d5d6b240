/**
 * The typed error a call must fail with, returned so that a test can assert its code. Any other error
 * escapes unchanged (the test fails on it), and a call that does not fail fails the test.
 */

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

export function thrown<E extends Error>(type: ErrorClass<E>, f: () => unknown): E {
  try {
    f();
  } catch (e) {
    if (e instanceof type) return e;
    throw e;
  }
  throw new Error(`nothing was thrown, expected ${type.name}`);
}

export async function rejection<E extends Error>(type: ErrorClass<E>, p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (e) {
    if (e instanceof type) return e;
    throw e;
  }
  throw new Error(`the promise resolved, expected ${type.name}`);
}
