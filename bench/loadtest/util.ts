/** Small helpers shared by the load test's coordinator and its workers. */
import { readFileSync } from "node:fs";

/** Runs `task` over `items`, at most `window` at once; the first failure rejects. */
export async function inWindows<T>(items: readonly T[], window: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, lane));
}

/**
 * CPU time (user + system) from a Linux /proc stat file (`/proc/<pid>/stat` for a process,
 * `/proc/thread-self/stat` for the calling thread), in ms; undefined where there is none. The kernel
 * counts in USER_HZ ticks, 100 per second on every Linux ABI Node runs on.
 */
export function procStatCpuMs(path: string): number | undefined {
  try {
    const stat = readFileSync(path, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}
