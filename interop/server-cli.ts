/**
 * npm run interop-server -- --port <port> [--host <addr>] [--provider native|portable] [--verbose]
 * Serves the MLS interop harness (../shared/mls-interop/mls_client.proto) until SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { nativeProvider, portableProvider } from "../keying/crypto/index.js";
import { startInteropServer } from "./server.js";

function usage(message: string): never {
  console.error(`${message}\nusage: npm run interop-server -- --port <port> [--host <addr>] [--provider native|portable] [--verbose]`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      port: { type: "string" },
      host: { type: "string", default: "127.0.0.1" },
      provider: { type: "string", default: "native" },
      verbose: { type: "boolean", default: false },
    },
  }));
} catch (e) {
  usage(e instanceof Error ? e.message : String(e));
}
const port = Number(values.port ?? usage("missing --port"));
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`invalid port ${values.port}`);
const provider = values.provider === "native" ? nativeProvider : values.provider === "portable" ? portableProvider : usage(`unknown provider ${values.provider}`);
const verbose = values.verbose;

const server = await startInteropServer({
  port,
  host: values.host,
  provider,
  ...(verbose ? { onError: (method: string, message: string) => console.error(`${method}: ${message}`) } : {}),
});
console.log(`${server.service.name} listening on ${server.address}`);

const stop = (): void => {
  void server.close().then(() => process.exit(0));
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
