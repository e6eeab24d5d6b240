/**
 * The demo app. `npm start` builds it into dist/demo, which the DS serves on its own origin (one process,
 * one URL). `npm run demo:dev` runs Vite's dev server instead, proxying the DS (run `npm start` alongside).
 */
import { fileURLToPath } from "node:url";
import { createLogger, defineConfig } from "vite";

const ds = process.env.CONCLAVE_DS ?? "http://127.0.0.1:8787";

// keying/ and hpke-js reach node:crypto only behind runtime guards (Node fast paths); in browsers the WebCrypto
// path runs, so Vite's notice that it stubbed those imports out is expected and only noise under `npm start`.
const logger = createLogger("warn");
const warn = logger.warn.bind(logger);
logger.warn = (message, options) => {
  if (!message.includes("externalized for browser compatibility") && !message.includes("INEFFECTIVE_DYNAMIC_IMPORT")) warn(message, options);
};

export default defineConfig({
  customLogger: logger,
  logLevel: "warn",
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  clearScreen: false,
  build: {
    outDir: fileURLToPath(new URL("../dist/demo", import.meta.url)),
    emptyOutDir: true,
    sourcemap: true,
  },
  // The frame-transform worker is created with { type: "module" }.
  worker: { format: "es" },
  server: {
    proxy: {
      "/socket.io": { target: ds, ws: true },
      "/dev": ds,
    },
  },
});
