/**
 * Runner of the MLS interop scenario scripts (../shared/mls-interop/configs, semantics in test-config.md and
 * the reference Go test-runner of mlswg/mls-implementations): each script is a list of actions by named
 * actors; every actor is mapped to one of the given gRPC clients, and the runner checks that every member,
 * committer and joiner agrees on the epoch_authenticator after every commit, and that decrypted
 * application data matches what was protected.
 *
 * Each script runs once per cipher suite (supported by at least one client) and handshake mode (PublicMessage
 * or PrivateMessage). Actors are assigned to clients round-robin in order of first appearance, with the
 * assignment rotated from run to run so every client plays every role across a suite's runs; `all` runs every
 * assignment (the reference runner's default, exponential in the number of actors), `random` one random one.
 */
import { randomBytes, randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { bytesEqual } from "../keying/codec/bytes.js";
import { loadInteropProto, type ExtensionMsg, type InteropProto, type MlsMethod, type MlsRequests, type MlsResponses, type ProposalDescriptionMsg } from "./proto.js";

const DEFAULT_CALL_TIMEOUT_MS = 120_000;
const MAX_COMBINATIONS = 4096;

// ---------------------------------------------------------------------------------------------------------
// Clients

export interface InteropClient {
  readonly address: string;
  /** The implementation's self-reported name (rpc Name). */
  readonly name: string;
  readonly suites: ReadonlySet<number>;
  call<M extends MlsMethod>(method: M, request: Partial<MlsRequests[M]>): Promise<MlsResponses[M]>;
  close(): void;
}

export class RpcError extends Error {
  override readonly name = "RpcError";
  constructor(
    readonly method: string,
    readonly code: grpc.status | undefined,
    detail: string,
  ) {
    super(`${method}: ${code === undefined ? "" : `${grpc.status[code] ?? code} `}${detail}`);
  }
}

type UnaryStub = (req: unknown, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

/** Connects to an interop server at host:port and asks its name and suites (fails if it does not answer). */
export async function connectClient(address: string, options: { proto?: InteropProto; callTimeoutMs?: number } = {}): Promise<InteropClient> {
  const proto = options.proto ?? (await loadInteropProto());
  const timeout = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
  const stub = new proto.Client(address, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  }) as unknown as Record<string, UnaryStub> & grpc.Client;
  const call = <M extends MlsMethod>(method: M, request: Partial<MlsRequests[M]>): Promise<MlsResponses[M]> =>
    new Promise((resolve, reject) => {
      const fn = stub[method];
      if (typeof fn !== "function") return reject(new RpcError(method, undefined, "not in the loaded proto"));
      fn.call(stub, request, { deadline: Date.now() + timeout }, (err, res) => {
        if (err) reject(new RpcError(method, err.code, err.details || err.message));
        else resolve(res as MlsResponses[M]);
      });
    });
  try {
    const { name } = await call("Name", {});
    const { ciphersuites } = await call("SupportedCiphersuites", {});
    return { address, name, suites: new Set(ciphersuites), call, close: () => stub.close() };
  } catch (e) {
    stub.close();
    throw new Error(`cannot reach interop client at ${address}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Scripts

export interface Step {
  readonly action: string;
  readonly actor?: string;
  readonly [key: string]: unknown;
}
export type Script = readonly Step[];

/** Parses a config file's JSON: `{ "scripts": { name: [step, ...] } }`. Throws on a malformed shape. */
export function parseConfig(json: unknown): Map<string, Script> {
  const scripts = (json as { scripts?: unknown } | null)?.scripts;
  if (typeof scripts !== "object" || scripts === null || Array.isArray(scripts)) throw new Error("config has no \"scripts\" object");
  const out = new Map<string, Script>();
  for (const [name, steps] of Object.entries(scripts)) {
    if (!Array.isArray(steps)) throw new Error(`script ${name} is not a list of steps`);
    steps.forEach((s: unknown, i) => {
      if (typeof s !== "object" || s === null || typeof (s as Step).action !== "string") throw new Error(`script ${name} step ${i} has no action`);
      const actor = (s as Step).actor;
      if (actor !== undefined && typeof actor !== "string") throw new Error(`script ${name} step ${i}: actor is not a string`);
    });
    out.set(name, steps as Step[]);
  }
  return out;
}

/** Every actor that needs a client, in order of first appearance (this order drives the assignment). */
export function scriptActors(script: Script): string[] {
  const seen = new Set<string>();
  const add = (v: unknown): void => {
    if (typeof v === "string" && v !== "") seen.add(v);
  };
  for (const step of script) {
    add(step.actor);
    if (step.action === "createGroup" && Array.isArray(step["members"])) step["members"].forEach(add);
    if (step.action === "externalJoin" || step.action === "newMemberAddProposal") add(step["joiner"]);
    if (step.action === "addExternalSigner") add(step["signer"]);
    if (step.action === "reinit") ["proposer", "committer", "welcomer"].forEach((k) => add(step[k]));
  }
  return [...seen];
}

// ---------------------------------------------------------------------------------------------------------
// Running

export type HandshakeMode = "all" | "private" | "public";
export type AssignmentMode = "rotate" | "all" | "random";

export interface RunOptions {
  /** Only these suites (default: every suite some client supports). */
  readonly suites?: readonly number[];
  readonly handshake?: HandshakeMode;
  readonly assignment?: AssignmentMode;
  /** Stop a script's runs at its first failure. */
  readonly failFast?: boolean;
}

export interface RunDescription {
  readonly cipherSuite: number;
  readonly encryptHandshake: boolean;
  /** actor -> client address */
  readonly actors: Readonly<Record<string, string>>;
}

export interface RunFailure extends RunDescription {
  readonly step: number;
  readonly action: string;
  readonly error: string;
}

export interface ScriptOutcome {
  readonly script: string;
  readonly runs: number;
  readonly failures: readonly RunFailure[];
}

/** One line per script: `<script>: passed` or `<script>: failed (<first failure>)`. */
export function formatOutcome(o: ScriptOutcome): string {
  if (o.runs === 0) return `${o.script}: failed (no client supports any requested cipher suite)`;
  const f = o.failures[0];
  if (!f) return `${o.script}: passed`;
  const who = Object.entries(f.actors)
    .map(([a, c]) => `${a}@${c}`)
    .join(" ");
  const mode = f.encryptHandshake ? "private" : "public";
  return `${o.script}: failed (${o.failures.length}/${o.runs} runs; first: suite ${f.cipherSuite}, ${mode} handshake, step ${f.step} ${f.action}: ${f.error}; ${who})`;
}

export async function runConfig(
  scripts: ReadonlyMap<string, Script>,
  clients: readonly InteropClient[],
  options: RunOptions = {},
  onOutcome?: (o: ScriptOutcome) => void,
): Promise<ScriptOutcome[]> {
  const outcomes: ScriptOutcome[] = [];
  for (const [name, script] of scripts) {
    const outcome = await runScript(name, script, clients, options);
    outcomes.push(outcome);
    onOutcome?.(outcome);
  }
  return outcomes;
}

export async function runScript(name: string, script: Script, clients: readonly InteropClient[], options: RunOptions = {}): Promise<ScriptOutcome> {
  const failures: RunFailure[] = [];
  let runs = 0;
  for (const run of runMatrix(script, clients, options)) {
    runs++;
    const failure = await new ScriptRun(run.cipherSuite, run.encryptHandshake, run.actorClients).run(script);
    if (failure) {
      failures.push({ cipherSuite: run.cipherSuite, encryptHandshake: run.encryptHandshake, actors: addresses(run.actorClients), ...failure });
      if (options.failFast) break;
    }
  }
  return { script: name, runs, failures };
}

interface PlannedRun {
  readonly cipherSuite: number;
  readonly encryptHandshake: boolean;
  readonly actorClients: ReadonlyMap<string, InteropClient>;
}

function addresses(m: ReadonlyMap<string, InteropClient>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [a, c] of m) out[a] = c.address;
  return out;
}

function* runMatrix(script: Script, clients: readonly InteropClient[], options: RunOptions): Generator<PlannedRun> {
  const actors = scriptActors(script);
  const offered = [...new Set(clients.flatMap((c) => [...c.suites]))].sort((a, b) => a - b);
  const suites = options.suites ? offered.filter((s) => options.suites!.includes(s)) : offered;
  const handshake = options.handshake ?? "all";
  const encryptOptions = handshake === "all" ? [false, true] : [handshake === "private"];
  for (const [s, cipherSuite] of suites.entries()) {
    const able = clients.filter((c) => c.suites.has(cipherSuite));
    for (const [e, encryptHandshake] of encryptOptions.entries()) {
      // Rotating by suite + mode pairs every assignment with both handshake modes across suites.
      for (const combo of assignments(actors.length, able.length, options.assignment ?? "rotate", s + e)) {
        yield { cipherSuite, encryptHandshake, actorClients: new Map(actors.map((a, i) => [a, able[combo[i]!]!])) };
      }
    }
  }
}

function assignments(slots: number, clients: number, mode: AssignmentMode, rotation: number): number[][] {
  if (mode === "random") return [Array.from({ length: slots }, () => Math.floor(Math.random() * clients))];
  if (mode === "rotate") return [Array.from({ length: slots }, (_, i) => (i + rotation) % clients)];
  if (clients ** slots > MAX_COMBINATIONS) throw new Error(`${clients}^${slots} actor assignments are too many for "all": use rotate or random`);
  let combos: number[][] = [[]];
  for (let s = 0; s < slots; s++) combos = combos.flatMap((c) => Array.from({ length: clients }, (_, v) => [...c, v]));
  return combos;
}

// ---------------------------------------------------------------------------------------------------------
// One run of one script

class StepError extends Error {}

/** Typed access to a step's parameters; a missing or mistyped one is a malformed script, reported as such. */
class Params {
  constructor(private readonly step: Step) {}

  private get(keys: readonly string[]): unknown {
    for (const k of keys) if (this.step[k] !== undefined) return this.step[k];
    return undefined;
  }
  string(key: string): string {
    const v = this.step[key];
    if (typeof v !== "string") throw new StepError(`malformed step: "${key}" must be a string`);
    return v;
  }
  optionalString(key: string): string | undefined {
    return this.step[key] === undefined ? undefined : this.string(key);
  }
  int(key: string): number {
    const v = this.step[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new StepError(`malformed step: "${key}" must be a non-negative integer`);
    return v;
  }
  ints(key: string): number[] {
    const v = this.step[key] ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 0)) throw new StepError(`malformed step: "${key}" must be a list of indices`);
    return v as number[];
  }
  strings(key: string): string[] {
    const v = this.step[key] ?? [];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new StepError(`malformed step: "${key}" must be a list of names`);
    return v as string[];
  }
  /**
   * Flags are spelled both snake_case and camelCase across the configs (fullCommit's "force_path", branch's
   * and reinit's "forcePath"); either spelling counts.
   */
  flag(...keys: string[]): boolean {
    const v = this.get(keys);
    if (v !== undefined && typeof v !== "boolean") throw new StepError(`malformed step: "${keys[0]}" must be a boolean`);
    return v === true;
  }
  extensions(key = "extensions"): ExtensionMsg[] {
    return parseExtensions(this.step[key]);
  }
  object(key: string): Step {
    const v = this.step[key];
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new StepError(`malformed step: "${key}" must be an object`);
    return v as Step;
  }
}

/** `[{ "extension_type": 3, "extension_data": "<base64>" }]` (the JSON form of the proto's Extension). */
function parseExtensions(v: unknown): ExtensionMsg[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new StepError("malformed step: extensions must be a list");
  return v.map((e: unknown) => {
    const { extension_type: t, extension_data: d } = (e ?? {}) as { extension_type?: unknown; extension_data?: unknown };
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > 0xffff) throw new StepError("malformed step: extension_type must be a uint16");
    if (d !== undefined && (typeof d !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(d))) throw new StepError("malformed step: extension_data must be base64");
    return { extensionType: t, extensionData: Buffer.from(d ?? "", "base64") };
  });
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, "utf8");


class ScriptRun {
  private readonly stateId = new Map<string, number>();
  private readonly transactionId = new Map<string, number>();
  private readonly signerId = new Map<string, number>();
  /** Per step index, the byte outputs of that step by key (the reference runner's message cache). */
  private cache: Map<string, Uint8Array>[] = [];

  constructor(
    private cipherSuite: number,
    private readonly encryptHandshake: boolean,
    private readonly actorClients: ReadonlyMap<string, InteropClient>,
  ) {}

  async run(script: Script): Promise<{ step: number; action: string; error: string } | undefined> {
    this.cache = script.map(() => new Map());
    for (let i = 0; i < script.length; i++) {
      const step = script[i]!;
      try {
        await this.runStep(i, step);
      } catch (e) {
        return { step: i, action: step.action, error: e instanceof Error ? e.message : String(e) };
      }
    }
    return undefined;
  }

  private client(actor: string): InteropClient {
    const c = this.actorClients.get(actor);
    if (!c) throw new StepError(`malformed step: no client for actor "${actor}"`);
    return c;
  }

  private async call<M extends MlsMethod>(actor: string, method: M, request: Partial<MlsRequests[M]>): Promise<MlsResponses[M]> {
    try {
      return await this.client(actor).call(method, request);
    } catch (e) {
      if (e instanceof RpcError) throw new StepError(`${actor}: ${e.message}`);
      throw e;
    }
  }

  private state(actor: string): number {
    const id = this.stateId.get(actor);
    if (id === undefined) throw new StepError(`malformed step: ${actor} has no group state`);
    return id;
  }

  private store(index: number, key: string, value: Uint8Array): void {
    this.cache[index]!.set(key, value);
  }

  /** The private keys of a KeyPackage a step created, kept as the reference runner keeps them. */
  private storePrivateKeys(index: number, keys: { initPriv: Uint8Array; encryptionPriv: Uint8Array; signaturePriv: Uint8Array }): void {
    this.store(index, "init_priv", keys.initPriv);
    this.store(index, "encryption_priv", keys.encryptionPriv);
    this.store(index, "signature_priv", keys.signaturePriv);
  }

  private message(index: number, key: string): Uint8Array {
    const v = this.cache[index]?.get(key);
    if (!v) throw new StepError(`malformed step: no ${key} at step ${index}`);
    return v;
  }

  private expectAuthenticator(who: string, got: Uint8Array, want: Uint8Array): void {
    if (!bytesEqual(got, want)) throw new StepError(`${who} failed to agree on the epoch authenticator`);
  }

  private actorOf(step: Step): string {
    if (typeof step.actor !== "string") throw new StepError("malformed step: no actor");
    return step.actor;
  }

  /** Group id of the script's first step (createGroup), with "++" appended when it must change (reinit). */
  private newGroupId(change: boolean): Uint8Array {
    const id = this.message(0, "group_id");
    return change ? Buffer.concat([id, utf8("++")]) : id;
  }

  /** Moves to another suite that every client of this run supports (the smallest one above the current, cyclically). */
  private changeCipherSuite(): void {
    const clients = [...new Set(this.actorClients.values())];
    const common = [...clients[0]!.suites].filter((s) => s !== this.cipherSuite && clients.every((c) => c.suites.has(s))).sort((a, b) => a - b);
    const next = common.find((s) => s > this.cipherSuite) ?? common[0];
    if (next === undefined) throw new StepError("no other cipher suite supported by every client");
    this.cipherSuite = next;
  }

  private describe(d: Step): ProposalDescriptionMsg {
    const p = new Params(d);
    const type = p.string("proposalType");
    const out: Partial<ProposalDescriptionMsg> = { proposalType: utf8(type) };
    switch (type) {
      case "add":
        out.keyPackage = this.message(p.int("keyPackage"), "key_package");
        break;
      case "remove":
        out.removedId = utf8(p.string("removed"));
        break;
      case "externalPSK":
        out.pskId = this.message(p.int("pskID"), "psk_id");
        break;
      case "resumptionPSK":
        out.epochId = p.int("epochID");
        break;
      case "groupContextExtensions":
        out.extensions = p.extensions();
        break;
      case "reinit":
        out.extensions = p.extensions();
        if (p.flag("changeCipherSuite")) this.changeCipherSuite();
        out.cipherSuite = this.cipherSuite;
        out.groupId = this.newGroupId(p.flag("changeGroupID"));
        break;
      default:
        throw new StepError(`malformed step: unknown proposal type "${type}"`);
    }
    return out as ProposalDescriptionMsg;
  }

  private async createKeyPackage(actor: string): Promise<MlsResponses["CreateKeyPackage"]> {
    const kp = await this.call(actor, "CreateKeyPackage", { cipherSuite: this.cipherSuite, identity: utf8(actor) });
    this.transactionId.set(actor, kp.transactionId);
    return kp;
  }

  /** JoinGroup with the joiner's pending KeyPackage; checks the epoch authenticator when one is expected. */
  private async join(joiner: string, welcome: Uint8Array, ratchetTree: Uint8Array | undefined, authenticator: Uint8Array | undefined, transactionId?: number): Promise<void> {
    const txId = transactionId ?? this.transactionId.get(joiner);
    if (txId === undefined) throw new StepError(`malformed step: no transaction for ${joiner}`);
    const res = await this.call(joiner, "JoinGroup", {
      transactionId: txId,
      welcome,
      encryptHandshake: this.encryptHandshake,
      identity: utf8(joiner),
      ...(ratchetTree ? { ratchetTree } : {}),
    });
    if (authenticator) this.expectAuthenticator(`joiner ${joiner}`, res.epochAuthenticator, authenticator);
    this.stateId.set(joiner, res.stateId);
  }

  private async handleCommit(member: string, commit: Uint8Array, proposals: Uint8Array[], authenticator: Uint8Array | undefined): Promise<void> {
    const res = await this.call(member, "HandleCommit", { stateId: this.state(member), proposal: proposals, commit });
    if (authenticator) this.expectAuthenticator(`member ${member}`, res.epochAuthenticator, authenticator);
    this.stateId.set(member, res.stateId);
  }

  private async handlePendingCommit(actor: string): Promise<Uint8Array> {
    const res = await this.call(actor, "HandlePendingCommit", { stateId: this.state(actor) });
    this.stateId.set(actor, res.stateId);
    return res.epochAuthenticator;
  }

  private proposals(indices: readonly number[]): Uint8Array[] {
    return indices.map((i) => this.message(i, "proposal"));
  }

  private async runStep(index: number, step: Step): Promise<void> {
    const p = new Params(step);
    switch (step.action) {
      case "createGroup": {
        const actor = this.actorOf(step);
        const groupId = utf8(randomUUID());
        const res = await this.call(actor, "CreateGroup", { groupId, cipherSuite: this.cipherSuite, encryptHandshake: this.encryptHandshake, identity: utf8(actor) });
        this.stateId.set(actor, res.stateId);
        this.store(index, "group_id", groupId);
        const members = p.strings("members");
        if (members.length === 0) return;
        const kps: { member: string; tx: number; kp: Uint8Array }[] = [];
        for (const member of members) {
          const kp = await this.call(member, "CreateKeyPackage", { cipherSuite: this.cipherSuite, identity: utf8(member) });
          kps.push({ member, tx: kp.transactionId, kp: kp.keyPackage });
        }
        const byValue = kps.map((k) => ({ proposalType: utf8("add"), keyPackage: k.kp }) as ProposalDescriptionMsg);
        const commit = await this.call(actor, "Commit", { stateId: this.state(actor), byValue });
        const auth = await this.handlePendingCommit(actor);
        for (const k of kps) await this.join(k.member, commit.welcome, undefined, auth, k.tx);
        return;
      }

      case "createKeyPackage": {
        const kp = await this.createKeyPackage(this.actorOf(step));
        this.store(index, "key_package", kp.keyPackage);
        this.storePrivateKeys(index, kp);
        return;
      }

      case "joinGroup": {
        const actor = this.actorOf(step);
        const welcomeIndex = p.int("welcome");
        await this.join(actor, this.message(welcomeIndex, "welcome"), this.cache[welcomeIndex]?.get("ratchet_tree"), undefined);
        return;
      }

      case "externalJoin": {
        const actor = this.actorOf(step);
        const joiner = p.string("joiner");
        const externalTree = p.flag("externalTree", "external_tree");
        const info = await this.call(actor, "GroupInfo", { stateId: this.state(actor), externalTree });
        this.store(index, "group_info", info.groupInfo);
        this.store(index, "ratchet_tree", info.ratchetTree);
        const psks = p.ints("psks").map((i) => ({ pskId: this.message(i, "psk_id"), pskSecret: this.message(i, "psk_secret") }));
        const res = await this.call(joiner, "ExternalJoin", {
          groupInfo: info.groupInfo,
          ratchetTree: info.ratchetTree,
          encryptHandshake: this.encryptHandshake,
          identity: utf8(joiner),
          removePrior: p.flag("removePrior", "remove_prior"),
          psks,
        });
        this.stateId.set(joiner, res.stateId);
        this.store(index, "commit", res.commit);
        this.store(index, "epoch_authenticator", res.epochAuthenticator);
        for (const member of [...p.strings("members"), actor]) await this.handleCommit(member, res.commit, [], res.epochAuthenticator);
        return;
      }

      case "installExternalPSK": {
        const pskId = randomBytes(32);
        const pskSecret = randomBytes(32);
        this.store(index, "psk_id", pskId);
        this.store(index, "psk_secret", pskSecret);
        for (const name of p.strings("clients")) {
          const id = this.stateId.get(name) ?? this.transactionId.get(name) ?? 0;
          await this.call(name, "StorePSK", { stateOrTransactionId: id, pskId, pskSecret });
        }
        return;
      }

      case "groupInfo": {
        const actor = this.actorOf(step);
        const res = await this.call(actor, "GroupInfo", { stateId: this.state(actor), externalTree: p.flag("externalTree", "external_tree") });
        this.store(index, "group_info", res.groupInfo);
        this.store(index, "ratchet_tree", res.ratchetTree);
        return;
      }

      case "addProposal":
      case "updateProposal":
      case "removeProposal":
      case "externalPSKProposal":
      case "resumptionPSKProposal":
      case "groupContextExtensionsProposal": {
        const actor = this.actorOf(step);
        const stateId = this.state(actor);
        const res =
          step.action === "addProposal"
            ? await this.call(actor, "AddProposal", { stateId, keyPackage: this.message(p.int("keyPackage"), "key_package") })
            : step.action === "updateProposal"
              ? await this.call(actor, "UpdateProposal", { stateId })
              : step.action === "removeProposal"
                ? await this.call(actor, "RemoveProposal", { stateId, removedId: utf8(p.string("removed")) })
                : step.action === "externalPSKProposal"
                  ? await this.call(actor, "ExternalPSKProposal", { stateId, pskId: this.message(p.int("pskID"), "psk_id") })
                  : step.action === "resumptionPSKProposal"
                    ? await this.call(actor, "ResumptionPSKProposal", { stateId, epochId: p.int("epochID") })
                    : await this.call(actor, "GroupContextExtensionsProposal", { stateId, extensions: p.extensions() });
        this.store(index, "proposal", res.proposal);
        return;
      }

      case "fullCommit":
      case "commit": {
        const actor = this.actorOf(step);
        const byReference = this.proposals(p.ints("byReference"));
        const byValueSteps = (step["byValue"] ?? []) as unknown;
        if (!Array.isArray(byValueSteps)) throw new StepError("malformed step: byValue must be a list");
        const byValue = byValueSteps.map((d: unknown) => this.describe(d as Step));
        const externalTree = p.flag("external_tree", "externalTree");
        const res = await this.call(actor, "Commit", { stateId: this.state(actor), byReference, byValue, forcePath: p.flag("force_path", "forcePath"), externalTree });
        this.store(index, "commit", res.commit);
        this.store(index, "welcome", res.welcome);
        if (externalTree) this.store(index, "ratchet_tree", res.ratchetTree);
        if (step.action === "commit") return;

        const auth = await this.handlePendingCommit(actor);
        this.store(index, "epoch_authenticator", auth);
        for (const member of p.strings("members")) await this.handleCommit(member, res.commit, byReference, auth);
        for (const joiner of p.strings("joiners")) await this.join(joiner, res.welcome, externalTree ? res.ratchetTree : undefined, auth);
        return;
      }

      case "handleCommit": {
        const actor = this.actorOf(step);
        const commitIndex = p.int("commit");
        const expected = this.cache[commitIndex]?.get("epoch_authenticator");
        await this.handleCommit(actor, this.message(commitIndex, "commit"), this.proposals(p.ints("byReference")), expected);
        return;
      }

      case "handlePendingCommit": {
        const actor = this.actorOf(step);
        this.store(index, "epoch_authenticator", await this.handlePendingCommit(actor));
        return;
      }

      case "protect": {
        const actor = this.actorOf(step);
        const authenticatedData = utf8(p.string("authenticatedData"));
        const plaintext = utf8(p.string("plaintext"));
        const res = await this.call(actor, "Protect", { stateId: this.state(actor), authenticatedData, plaintext });
        this.store(index, "authenticatedData", authenticatedData);
        this.store(index, "plaintext", plaintext);
        this.store(index, "ciphertext", res.ciphertext);
        return;
      }

      case "unprotect": {
        const actor = this.actorOf(step);
        const ct = p.int("ciphertext");
        const res = await this.call(actor, "Unprotect", { stateId: this.state(actor), ciphertext: this.message(ct, "ciphertext") });
        if (!bytesEqual(res.authenticatedData, this.message(ct, "authenticatedData"))) throw new StepError(`${actor}: incorrect authenticated data`);
        if (!bytesEqual(res.plaintext, this.message(ct, "plaintext"))) throw new StepError(`${actor}: incorrect plaintext`);
        this.store(index, "authenticatedData", res.authenticatedData);
        this.store(index, "plaintext", res.plaintext);
        return;
      }

      case "reinit":
        return this.reinit(p);

      case "branch":
        return this.branch(this.actorOf(step), p);

      case "newMemberAddProposal": {
        const actor = this.actorOf(step);
        const joiner = p.string("joiner");
        const info = await this.call(actor, "GroupInfo", { stateId: this.state(actor), externalTree: false });
        const res = await this.call(joiner, "NewMemberAddProposal", { groupInfo: info.groupInfo, identity: utf8(joiner) });
        this.transactionId.set(joiner, res.transactionId);
        this.store(index, "proposal", res.proposal);
        this.storePrivateKeys(index, res);
        return;
      }

      case "addExternalSigner": {
        const actor = this.actorOf(step);
        const signer = p.string("signer");
        const created = await this.call(signer, "CreateExternalSigner", { cipherSuite: this.cipherSuite, identity: utf8(signer) });
        this.signerId.set(signer, created.signerId);
        const res = await this.call(actor, "AddExternalSigner", { stateId: this.state(actor), externalSender: created.externalSender });
        this.store(index, "proposal", res.proposal);
        return;
      }

      case "externalSignerProposal": {
        const actor = this.actorOf(step);
        const member = p.string("member");
        const info = await this.call(member, "GroupInfo", { stateId: this.state(member), externalTree: true });
        const signerId = this.signerId.get(actor);
        if (signerId === undefined) throw new StepError(`malformed step: ${actor} is not an external signer`);
        const res = await this.call(actor, "ExternalSignerProposal", {
          signerId,
          groupInfo: info.groupInfo,
          ratchetTree: info.ratchetTree,
          description: this.describe(p.object("description")),
        });
        this.store(index, "proposal", res.proposal);
        return;
      }

      default:
        throw new StepError(`unknown action "${step.action}"`);
    }
  }

  private async reinit(p: Params): Promise<void> {
    const committer = p.string("committer");
    const welcomer = p.string("welcomer");
    const proposer = p.optionalString("proposer");
    const members = p.strings("members");
    const everyone = new Set([...members, ...(proposer ? [proposer] : []), committer, welcomer]);
    const notCommitter = [...everyone].filter((a) => a !== committer);
    const notWelcomer = [...everyone].filter((a) => a !== welcomer);

    const groupId = this.newGroupId(p.flag("changeGroupID"));
    if (p.flag("changeCipherSuite")) this.changeCipherSuite();

    const proposal = proposer
      ? (await this.call(proposer, "ReInitProposal", { stateId: this.state(proposer), cipherSuite: this.cipherSuite, groupId, extensions: p.extensions() })).proposal
      : this.message(p.int("externalReinitProposal"), "proposal");

    // Only by reference, as in the reference runner.
    const commit = (await this.call(committer, "ReInitCommit", { stateId: this.state(committer), byReference: [proposal] })).commit;
    const reinitIds = new Map<string, number>();
    const keyPackages = new Map<string, Uint8Array>();
    const pending = await this.call(committer, "HandlePendingReInitCommit", { stateId: this.state(committer) });
    reinitIds.set(committer, pending.reinitId);
    keyPackages.set(committer, pending.keyPackage);
    for (const member of notCommitter) {
      const res = await this.call(member, "HandleReInitCommit", { stateId: this.state(member), proposal: [proposal], commit });
      this.expectAuthenticator(`member ${member}`, res.epochAuthenticator, pending.epochAuthenticator);
      reinitIds.set(member, res.reinitId);
      keyPackages.set(member, res.keyPackage);
    }

    const externalTree = p.flag("externalTree", "external_tree");
    const welcomed = await this.call(welcomer, "ReInitWelcome", {
      reinitId: reinitIds.get(welcomer)!,
      keyPackage: notWelcomer.map((m) => keyPackages.get(m)!),
      forcePath: p.flag("forcePath", "force_path"),
      externalTree,
    });
    this.stateId.set(welcomer, welcomed.stateId);
    for (const member of notWelcomer) {
      const res = await this.call(member, "HandleReInitWelcome", {
        reinitId: reinitIds.get(member)!,
        welcome: welcomed.welcome,
        ...(externalTree ? { ratchetTree: welcomed.ratchetTree } : {}),
      });
      this.expectAuthenticator(`member ${member} (reinit group)`, res.epochAuthenticator, welcomed.epochAuthenticator);
      this.stateId.set(member, res.stateId);
    }
  }

  private async branch(actor: string, p: Params): Promise<void> {
    const members = p.strings("members");
    const tx = new Map<string, number>();
    const keyPackages: Uint8Array[] = [];
    for (const member of members) {
      const kp = await this.call(member, "CreateKeyPackage", { cipherSuite: this.cipherSuite, identity: utf8(member) });
      tx.set(member, kp.transactionId);
      keyPackages.push(kp.keyPackage);
    }
    const externalTree = p.flag("externalTree", "external_tree");
    const res = await this.call(actor, "CreateBranch", {
      stateId: this.state(actor),
      groupId: utf8(randomUUID()),
      extensions: p.extensions(),
      keyPackages,
      forcePath: p.flag("forcePath", "force_path"),
      externalTree,
    });
    this.stateId.set(actor, res.stateId);
    for (const member of members) {
      const joined = await this.call(member, "HandleBranch", {
        stateId: this.state(member),
        transactionId: tx.get(member)!,
        welcome: res.welcome,
        ...(externalTree ? { ratchetTree: res.ratchetTree } : {}),
      });
      this.expectAuthenticator(`member ${member} (branch)`, joined.epochAuthenticator, res.epochAuthenticator);
      this.stateId.set(member, joined.stateId);
    }
  }
}
