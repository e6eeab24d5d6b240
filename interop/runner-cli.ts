/**
 * npm run interop -- --config <file> --client host:port [--client host:port ...]
 *   [--local <n>]            also start n servers of our own in this process and use them as clients
 *   [--suite <id>]...        only these cipher suites (default: every suite some client supports)
 *   [--private | --public]   only PrivateMessage / only PublicMessage handshakes (default both)
 *   [--assignment rotate|all|random]  actor->client mapping (default rotate; all = every combination)
 *   [--script <name>]...     only these scripts
 *   [--fail-fast] [--json <file>]
 * Prints `<script>: passed|failed (reason)` per script; exits 1 if any script failed, 2 on bad usage.
 */
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { connectClient, formatOutcome, parseConfig, runConfig, type AssignmentMode, type InteropClient } from "./runner.js";
import { startInteropServer, type RunningInteropServer } from "./server.js";

function usage(message: string): never {
  console.error(`${message}\nusage: npm run interop -- --config <file> --client host:port [--client host:port ...] [--local n] [--suite id]... [--private|--public] [--assignment rotate|all|random] [--script name]... [--fail-fast] [--json file]`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      config: { type: "string" },
      client: { type: "string", multiple: true, default: [] },
      local: { type: "string", default: "0" },
      suite: { type: "string", multiple: true, default: [] },
      private: { type: "boolean", default: false },
      public: { type: "boolean", default: false },
      assignment: { type: "string", default: "rotate" },
      script: { type: "string", multiple: true, default: [] },
      "fail-fast": { type: "boolean", default: false },
      json: { type: "string" },
    },
  }));
} catch (e) {
  usage(e instanceof Error ? e.message : String(e));
}

const configPath = values.config ?? usage("missing --config");
const local = Number(values.local);
if (!Number.isInteger(local) || local < 0 || local > 16) usage(`invalid --local ${values.local}`);
if (values.client.length === 0 && local === 0) usage("no client: give --client host:port or --local n");
const suites = values.suite.map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n <= 0 || n > 0xffff) usage(`invalid --suite ${s}`);
  return n;
});
if (!["rotate", "all", "random"].includes(values.assignment)) usage(`invalid --assignment ${values.assignment}`);
if (values.private && values.public) usage("--private and --public exclude each other");

let scripts;
try {
  scripts = parseConfig(JSON.parse(await readFile(configPath, "utf8")));
} catch (e) {
  usage(`cannot read config ${configPath}: ${e instanceof Error ? e.message : String(e)}`);
}
for (const name of values.script) if (!scripts.has(name)) usage(`no script ${name} in ${configPath}`);
if (values.script.length > 0) scripts = new Map([...scripts].filter(([name]) => values.script.includes(name)));

const servers: RunningInteropServer[] = [];
const clients: InteropClient[] = [];
let failed = 0;
try {
  for (let i = 0; i < local; i++) servers.push(await startInteropServer());
  for (const address of [...servers.map((s) => s.address), ...values.client]) {
    const c = await connectClient(address);
    clients.push(c);
    console.log(`client ${address}: ${c.name}, suites ${[...c.suites].join(",")}`);
  }
  const outcomes = await runConfig(
    scripts,
    clients,
    {
      ...(suites.length > 0 ? { suites } : {}),
      handshake: values.private ? "private" : values.public ? "public" : "all",
      assignment: values.assignment as AssignmentMode,
      failFast: values["fail-fast"],
    },
    (o) => console.log(formatOutcome(o)),
  );
  failed = outcomes.filter((o) => o.failures.length > 0 || o.runs === 0).length;
  const runs = outcomes.reduce((n, o) => n + o.runs, 0);
  console.log(`\n${outcomes.length} scripts, ${runs} runs: ${outcomes.length - failed} passed, ${failed} failed`);
  if (values.json) await writeFile(values.json, JSON.stringify(outcomes, null, 2) + "\n");
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  failed = 1;
} finally {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close()));
}
process.exit(failed > 0 ? 1 : 0);
