/**
 * The Node backend's own machinery: the encapsulation pool shared with a worker thread, and key generation
 * that must not hang the process (a Node 20 deadlock, see node-backend.ts).
 */
import { spawn } from "node:child_process";
import * as nc from "node:crypto";
import * as wt from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { bytesEqual } from "../../keying/codec/bytes.js";
import { CryptoError } from "../../keying/crypto/errors.js";
import { EphemeralDhPool, type Encapsulated } from "../../keying/crypto/node-dh-pool.js";

function x25519(publicKey: Uint8Array) {
  return nc.createPublicKey({ key: { kty: "OKP", crv: "X25519", x: Buffer.from(publicKey).toString("base64url") }, format: "jwk" });
}

/** Generated with a JWK public half: exporting a freshly generated KeyObject can deadlock Node 20. */
function keyPair(): { privateKey: nc.KeyObject; publicKey: Uint8Array } {
  const kp = nc.generateKeyPairSync("x25519", { publicKeyEncoding: { format: "jwk" } } as unknown as nc.X25519KeyPairKeyObjectOptions) as unknown as {
    privateKey: nc.KeyObject;
    publicKey: nc.JsonWebKey;
  };
  return { privateKey: kp.privateKey, publicKey: new Uint8Array(Buffer.from(kp.publicKey.x!, "base64url")) };
}

/** The main thread's side, slowed down so that the worker surely takes part of every batch. */
function slowLocal(counter: { n: number }) {
  return (_curve: string, pk: Uint8Array): Encapsulated => {
    counter.n++;
    const until = performance.now() + 2;
    while (performance.now() < until);
    const eph = keyPair();
    let dh: Buffer;
    try {
      dh = nc.diffieHellman({ privateKey: eph.privateKey, publicKey: x25519(pk) });
    } catch {
      throw new CryptoError("invalid-public-key", "X25519 key agreement failed");
    }
    return { publicKey: eph.publicKey, dh: new Uint8Array(dh) };
  };
}

describe("EphemeralDhPool", () => {
  it("splits a batch between main thread and worker; every result is a valid encapsulation", async () => {
    const counter = { n: 0 };
    const pool = new EphemeralDhPool(wt, slowLocal(counter));
    const recipients = Array.from({ length: 120 }, keyPair);
    const run = () => Promise.all(recipients.map((r) => pool.encapsulate("x25519", r.publicKey)));

    // The first large batch starts the worker and runs on the main thread alone.
    await run();
    expect(counter.n).toBe(recipients.length);
    let results: Encapsulated[] = [];
    for (let attempt = 0; attempt < 50 && counter.n === recipients.length; attempt++) {
      await new Promise((r) => setTimeout(r, 20));
      counter.n = 0;
      results = await run();
    }
    expect(counter.n).toBeLessThan(recipients.length);

    const encs = new Set<string>();
    results.forEach((e, i) => {
      const z = nc.diffieHellman({ privateKey: recipients[i]!.privateKey, publicKey: x25519(e.publicKey) });
      expect(bytesEqual(new Uint8Array(z), e.dh)).toBe(true);
      encs.add(Buffer.from(e.publicKey).toString("hex"));
    });
    expect(encs.size).toBe(recipients.length);
  });

  it("rejects small-order keys with CryptoError whichever thread took them", async () => {
    const counter = { n: 0 };
    const pool = new EphemeralDhPool(wt, slowLocal(counter));
    const good = Array.from({ length: 60 }, () => keyPair().publicKey);
    const bad = Array.from({ length: 40 }, () => new Uint8Array(32));
    await Promise.all(good.map((pk) => pool.encapsulate("x25519", pk)));
    for (let attempt = 0; attempt < 50; attempt++) {
      await new Promise((r) => setTimeout(r, 20));
      counter.n = 0;
      const outcomes = await Promise.allSettled([...good, ...bad].map((pk) => pool.encapsulate("x25519", pk)));
      expect(outcomes.slice(0, good.length).every((o) => o.status === "fulfilled")).toBe(true);
      for (const o of outcomes.slice(good.length)) {
        expect(o.status).toBe("rejected");
        expect((o as PromiseRejectedResult).reason).toBeInstanceOf(CryptoError);
      }
      if (counter.n < good.length + bad.length) return;
    }
    throw new Error("the worker never took part");
  });
});

describe("node:crypto key generation", () => {
  it("does not deadlock under garbage collection (child process, 120 s limit)", async () => {
    const script = `
      const { getCipherSuite } = await import("./keying/crypto/index.ts");
      for (const id of [1, 2]) {
        const s = await getCipherSuite(id);
        for (let i = 0; i < 12000; i++) {
          await s.primitives.hpkeGenerateKeyPair();
          await s.primitives.signatureGenerateKeyPair();
        }
      }
      console.log("ok");`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: new URL("../..", import.meta.url).pathname });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const exited = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve(false);
      }, 120_000);
      child.on("exit", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(exited).toBe(true);
    expect(out.trim()).toBe("ok");
  }, 130_000);
});
