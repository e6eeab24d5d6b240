/**
 * Benchmark page: runs one throughput measurement in a fresh module worker (bench-worker.ts) and
 * returns its result, so each size starts from a clean worker.
 */
import type { BenchRequest, BenchResult } from "./bench-worker.js";

async function runWorkerBench(req: BenchRequest): Promise<BenchResult> {
  const worker = new Worker("/bench-worker.js", { type: "module" });
  try {
    return await new Promise<BenchResult>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<{ result?: BenchResult; error?: string }>) =>
        e.data.result ? resolve(e.data.result) : reject(new Error(e.data.error ?? "bench worker failed"));
      worker.onerror = (e) => reject(new Error(e.message));
      worker.postMessage(req);
    });
  } finally {
    worker.terminate();
  }
}

Object.assign(globalThis, { runWorkerBench, conclaveReady: true });
