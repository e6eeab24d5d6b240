/** The interop runner's script handling and the server's transport, independent of MLS itself. */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectClient, formatOutcome, parseConfig, runScript, scriptActors, type InteropClient, RpcError } from "../../interop/runner.js";
import { startInteropServer, type RunningInteropServer } from "../../interop/server.js";
import { InteropService } from "../../interop/service.js";
import { loadInteropProto } from "../../interop/proto.js";
import { decode } from "../../keying/codec/reader.js";
import { decodeTree } from "../../keying/mls/ratchet-tree.js";
import type { MlsMethod, MlsRequests, MlsResponses, ProposalDescriptionMsg } from "../../interop/proto.js";

describe("config parsing", () => {
  it("accepts the scripts shape and rejects others", () => {
    const scripts = parseConfig({ scripts: { a: [{ action: "createGroup", actor: "alice" }] } });
    expect([...scripts.keys()]).toEqual(["a"]);
    expect(() => parseConfig({})).toThrow(/scripts/);
    expect(() => parseConfig({ scripts: { a: {} } })).toThrow(/list of steps/);
    expect(() => parseConfig({ scripts: { a: [{ actor: "alice" }] } })).toThrow(/no action/);
    expect(() => parseConfig({ scripts: { a: [{ action: "x", actor: 3 }] } })).toThrow(/actor/);
  });

  it("lists every actor in order of first appearance, including members, joiners and signers", () => {
    expect(
      scriptActors([
        { action: "createGroup", actor: "alice", members: ["bob", "carol"] },
        { action: "externalJoin", actor: "bob", joiner: "dave" },
        { action: "addExternalSigner", actor: "alice", signer: "ds" },
        { action: "newMemberAddProposal", actor: "alice", joiner: "erin" },
        { action: "installExternalPSK", clients: ["alice"] },
      ]),
    ).toEqual(["alice", "bob", "carol", "dave", "ds", "erin"]);
  });
});

/** An in-memory client whose answers a test controls, to check what the runner verifies. */
function fakeClient(address: string, answer: (method: MlsMethod, req: unknown) => unknown): InteropClient & { calls: string[] } {
  const calls: string[] = [];
  return {
    address,
    name: "fake",
    suites: new Set([1]),
    calls,
    call: async <M extends MlsMethod>(method: M, req: Partial<MlsRequests[M]>) => {
      calls.push(method);
      return answer(method, req) as MlsResponses[M];
    },
    close: () => {},
  };
}

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe("runner checks", () => {
  const script = parseConfig({
    scripts: {
      s: [
        { action: "createGroup", actor: "alice" },
        { action: "createKeyPackage", actor: "bob" },
        { action: "addProposal", actor: "alice", keyPackage: 1 },
        { action: "fullCommit", actor: "alice", byReference: [2], joiners: ["bob"] },
      ],
    },
  }).get("s")!;

  function answers(joinerAuth: Uint8Array) {
    return (method: MlsMethod): unknown => {
      switch (method) {
        case "CreateGroup":
          return { stateId: 1 };
        case "CreateKeyPackage":
          return { transactionId: 2, keyPackage: bytes(1), initPriv: bytes(), encryptionPriv: bytes(), signaturePriv: bytes() };
        case "AddProposal":
          return { proposal: bytes(2) };
        case "Commit":
          return { commit: bytes(3), welcome: bytes(4), ratchetTree: bytes() };
        case "HandlePendingCommit":
          return { stateId: 1, epochAuthenticator: bytes(9, 9) };
        case "JoinGroup":
          return { stateId: 3, epochAuthenticator: joinerAuth };
        default:
          throw new RpcError(method, grpc.status.UNIMPLEMENTED, "not in this fake");
      }
    };
  }

  it("passes when the joiner agrees on the epoch authenticator", async () => {
    const c = fakeClient("a", answers(bytes(9, 9)));
    const o = await runScript("s", script, [c]);
    expect(formatOutcome(o)).toBe("s: passed");
    expect(o.runs).toBe(2); // suite 1, public and private handshakes
    expect(c.calls.slice(0, 6)).toEqual(["CreateGroup", "CreateKeyPackage", "AddProposal", "Commit", "HandlePendingCommit", "JoinGroup"]);
  });

  it("fails, naming the step and actor, when the joiner disagrees", async () => {
    const o = await runScript("s", script, [fakeClient("a", answers(bytes(9, 8)))]);
    expect(o.failures).toHaveLength(2);
    expect(o.failures[0]).toMatchObject({ step: 3, action: "fullCommit", cipherSuite: 1 });
    expect(formatOutcome(o)).toMatch(/^s: failed \(2\/2 runs; .*joiner bob failed to agree on the epoch authenticator/);
  });

  it("rotates the actor->client assignment between runs", async () => {
    const a = fakeClient("a", answers(bytes(9, 9)));
    const b = fakeClient("b", answers(bytes(9, 9)));
    await runScript("s", script, [a, b]);
    // Run 1: alice@a, bob@b; run 2: alice@b, bob@a.
    expect(a.calls.filter((m) => m === "CreateGroup")).toHaveLength(1);
    expect(b.calls.filter((m) => m === "CreateGroup")).toHaveLength(1);
    expect(a.calls.filter((m) => m === "JoinGroup")).toHaveLength(1);
  });

  it("reports a malformed script step as a failure, not a crash", async () => {
    const bad = parseConfig({ scripts: { s: [{ action: "createGroup", actor: "alice" }, { action: "addProposal", actor: "alice", keyPackage: 7 }] } }).get("s")!;
    const o = await runScript("s", bad, [fakeClient("a", answers(bytes()))]);
    expect(o.failures[0]).toMatchObject({ step: 1, error: "malformed step: no key_package at step 7" });
  });
});

describe("interop server", () => {
  let server: RunningInteropServer;
  let client: InteropClient;
  beforeAll(async () => {
    server = await startInteropServer({ port: 0 });
    client = await connectClient(server.address);
  });
  afterAll(async () => {
    client.close();
    await server.close();
  });

  describe("transport", () => {
    it("answers its name and every RFC 9420 suite", () => {
      expect(client.name).toMatch(/Conclave/);
      expect([...client.suites].sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    });

    it("answers NOT_FOUND for an unknown state or transaction id", async () => {
      await expect(client.call("StorePSK", { stateOrTransactionId: 4242, pskId: bytes(1), pskSecret: bytes(2) })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    });

    it("answers INVALID_ARGUMENT for an unsupported cipher suite", async () => {
      await expect(client.call("CreateExternalSigner", { cipherSuite: 99, identity: bytes(1) })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    });
  });

  describe("behaviour", () => {
    const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

    async function twoMembers(): Promise<{ alice: number; bob: number }> {
      const { stateId: alice } = await client.call("CreateGroup", { groupId: utf8("g"), cipherSuite: 1, encryptHandshake: false, identity: utf8("alice") });
      const kp = await client.call("CreateKeyPackage", { cipherSuite: 1, identity: utf8("bob") });
      const add = await client.call("Commit", { stateId: alice, byValue: [{ proposalType: utf8("add"), keyPackage: kp.keyPackage } as ProposalDescriptionMsg] });
      const merged = await client.call("HandlePendingCommit", { stateId: alice });
      const joined = await client.call("JoinGroup", { transactionId: kp.transactionId, welcome: add.welcome, encryptHandshake: false, identity: utf8("bob") });
      expect(Buffer.from(joined.epochAuthenticator)).toEqual(Buffer.from(merged.epochAuthenticator));
      return { alice, bob: joined.stateId };
    }

    it("refuses a tampered or garbage commit with INVALID_ARGUMENT and leaves the member's state as it was", async () => {
      const { alice, bob } = await twoMembers();
      const before = (await client.call("StateAuth", { stateId: bob })).stateAuthSecret;
      const { commit } = await client.call("Commit", { stateId: alice, forcePath: true });
      const tampered = Uint8Array.from(commit);
      tampered[tampered.length - 1]! ^= 1;
      await expect(client.call("HandleCommit", { stateId: bob, commit: tampered })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      await expect(client.call("HandleCommit", { stateId: bob, commit: bytes(0, 1, 0, 1, 7) })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      expect(Buffer.from((await client.call("StateAuth", { stateId: bob })).stateAuthSecret)).toEqual(Buffer.from(before));

      const merged = await client.call("HandlePendingCommit", { stateId: alice });
      const handled = await client.call("HandleCommit", { stateId: bob, commit });
      expect(Buffer.from(handled.epochAuthenticator)).toEqual(Buffer.from(merged.epochAuthenticator));
      expect(Buffer.from(handled.epochAuthenticator)).not.toEqual(Buffer.from(before));
    });

    it("honours force_path and external_tree in CreateBranch: a path only when forced, the tree only beside the Welcome", async () => {
      for (const forcePath of [false, true]) {
        const { alice, bob } = await twoMembers();
        const kp = await client.call("CreateKeyPackage", { cipherSuite: 1, identity: utf8("bob") });
        const branch = await client.call("CreateBranch", { stateId: alice, groupId: utf8(`branch ${forcePath}`), keyPackages: [kp.keyPackage], forcePath, externalTree: true });
        // Two leaves under one parent (node 1): only the committer's path fills it.
        expect(decode(decodeTree, branch.ratchetTree).isBlank(1)).toBe(!forcePath);
        const handle = { stateId: bob, transactionId: kp.transactionId, welcome: branch.welcome };
        await expect(client.call("HandleBranch", handle)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
        const joined = await client.call("HandleBranch", { ...handle, ratchetTree: branch.ratchetTree });
        expect(Buffer.from(joined.epochAuthenticator)).toEqual(Buffer.from(branch.epochAuthenticator));
      }
      const { alice, bob } = await twoMembers();
      const kp = await client.call("CreateKeyPackage", { cipherSuite: 1, identity: utf8("bob") });
      const branch = await client.call("CreateBranch", { stateId: alice, groupId: utf8("branch"), keyPackages: [kp.keyPackage], externalTree: false });
      expect(branch.ratchetTree).toHaveLength(0);
      const joined = await client.call("HandleBranch", { stateId: bob, transactionId: kp.transactionId, welcome: branch.welcome });
      expect(Buffer.from(joined.epochAuthenticator)).toEqual(Buffer.from(branch.epochAuthenticator));
    });

    it("returns the new epoch's tree with a Commit only under external_tree, and the joiner needs it", async () => {
      const { alice } = await twoMembers();
      const kp = await client.call("CreateKeyPackage", { cipherSuite: 1, identity: utf8("carol") });
      const add = [{ proposalType: utf8("add"), keyPackage: kp.keyPackage } as ProposalDescriptionMsg];
      const inWelcome = await client.call("Commit", { stateId: alice, byValue: add, externalTree: false });
      expect(inWelcome.ratchetTree).toHaveLength(0);
      const out = await client.call("Commit", { stateId: alice, byValue: add, externalTree: true });
      expect(decode(decodeTree, out.ratchetTree).memberCount).toBe(3);
      const merged = await client.call("HandlePendingCommit", { stateId: alice });
      const join = { transactionId: kp.transactionId, welcome: out.welcome, encryptHandshake: false, identity: utf8("carol") };
      await expect(client.call("JoinGroup", join)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
      const joined = await client.call("JoinGroup", { ...join, ratchetTree: out.ratchetTree });
      expect(Buffer.from(joined.epochAuthenticator)).toEqual(Buffer.from(merged.epochAuthenticator));
    });

    it("answers FAILED_PRECONDITION for HandlePendingCommit without a pending commit", async () => {
      const { alice } = await twoMembers();
      await expect(client.call("HandlePendingCommit", { stateId: alice })).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    });

    it("runs the step-by-step actions (commit, handlePendingCommit, handleCommit, joinGroup, groupInfo)", async () => {
      const script = parseConfig({
        scripts: {
          steps: [
            { action: "createGroup", actor: "alice", members: ["bob"] },
            { action: "createKeyPackage", actor: "carol" },
            { action: "addProposal", actor: "bob", keyPackage: 1 },
            { action: "commit", actor: "alice", byReference: [2], external_tree: true },
            { action: "handlePendingCommit", actor: "alice" },
            { action: "handleCommit", actor: "bob", commit: 3, byReference: [2] },
            { action: "joinGroup", actor: "carol", welcome: 3 },
            { action: "groupInfo", actor: "carol", externalTree: true },
            { action: "protect", actor: "carol", authenticatedData: "ad", plaintext: "hello" },
            { action: "unprotect", actor: "alice", ciphertext: 8 },
            { action: "unprotect", actor: "bob", ciphertext: 8 },
          ],
        },
      }).get("steps")!;
      const o = await runScript("steps", script, [client], { suites: [1, 3] });
      expect(formatOutcome(o)).toBe("steps: passed");
      expect(o.runs).toBe(4);
    });

    it("implements every RPC of the shared proto and answers empty requests with a typed status, never INTERNAL", async () => {
      const { methods } = await loadInteropProto();
      expect(methods.length).toBeGreaterThanOrEqual(34);
      const codes: Record<string, string> = {};
      for (const m of methods) {
        codes[m] = await client.call(m as MlsMethod, {}).then(
          () => "OK",
          (e: RpcError) => grpc.status[e.code!]!,
        );
      }
      const bad = Object.entries(codes).filter(([, c]) => c === "UNIMPLEMENTED" || c === "INTERNAL" || c === "UNKNOWN");
      expect(bad).toEqual([]);
    });

    it("forgets a state on Free", async () => {
      const { alice } = await twoMembers();
      const held = server.service.size;
      await client.call("Free", { stateId: alice });
      expect(server.service.size).toBe(held - 1);
      await expect(client.call("StateAuth", { stateId: alice })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    });
  });
});

describe("interop service limits", () => {
  it("answers UNIMPLEMENTED for a method it does not know", async () => {
    await expect(new InteropService().handle("Teleport", {})).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
  });

  it("holds at most maxEntries entries", async () => {
    const service = new InteropService({ maxEntries: 2 });
    const kp = { cipherSuite: 1, identity: new Uint8Array([1]) };
    await service.handle("CreateKeyPackage", kp);
    await service.handle("CreateKeyPackage", kp);
    await expect(service.handle("CreateKeyPackage", kp)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
  });
});
