/**
 * The browser media layer's pure parts: the E2EE badge state read from the worker's counters, the
 * mediasoup-client adapter (against mediasoup-client's own types, with stand-in objects), and the demo's
 * static file handler on the DS.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { types as mediasoup } from "mediasoup-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { E2eeStatusBook } from "../../client/media/e2ee-status.js";
import { E2eeUnsupportedError } from "../../client/media/e2ee.js";
import { protectConsumer, protectConsumerOptions, protectProducer, protectProducerOptions, releaseMediasoup } from "../../client/media/mediasoup.js";
import { nameOf } from "../../client/media/call.js";
import type { ParticipantStats } from "../../client/worker/protocol.js";
import { serveDemo } from "../../sfu-signaling/demo-files.js";

function stats(participantId: string, fields: Partial<ParticipantStats> = {}): ParticipantStats {
  return { participantId, encrypted: 0, decrypted: 0, held: 0, released: 0, dropped: {}, replayRejected: 0, ...fields };
}

describe("E2eeStatusBook", () => {
  it("reads decrypting, waiting for keys and failing from recent counter changes", () => {
    const book = new E2eeStatusBook("me", 3000);
    expect(book.status("bob", 0)).toBeUndefined();
    book.update([stats("bob", { held: 5 })], 1000);
    expect(book.status("bob", 1000)?.state).toBe("waiting-for-keys");
    book.update([stats("bob", { held: 5, released: 5, decrypted: 40 })], 2000);
    expect(book.status("bob", 2000)).toMatchObject({ state: "decrypting", frames: 40, held: 5, released: 5, failures: 0 });
    // Frames stop: once the window has passed without a decrypt, the tile waits again.
    expect(book.status("bob", 6000)?.state).toBe("waiting-for-keys");
    // Frames arrive but do not authenticate.
    book.update([stats("bob", { decrypted: 40, dropped: { "auth-failed": 30 }, lastError: { reason: "auth-failed", message: "bad tag", at: 6500 } })], 6500);
    expect(book.status("bob", 6500)).toMatchObject({ state: "failing", failures: 30, lastError: "auth-failed: bad tag" });
    // A few drops among many decrypted frames still decrypt.
    book.update([stats("bob", { decrypted: 400, dropped: { "auth-failed": 31 } })], 7000);
    expect(book.status("bob", 7000)?.state).toBe("decrypting");
    book.update([stats("bob", { decrypted: 400, dropped: { "auth-failed": 31 } })], 20_000);
    expect(book.status("bob", 20_000)?.state).toBe("waiting-for-keys");
  });

  it("judges the local participant by frames encrypted, and a missing send key as waiting", () => {
    const book = new E2eeStatusBook("me", 3000);
    book.update([stats("me", { dropped: { "no-send-key": 12 } })], 1000);
    expect(book.status("me", 1000)).toMatchObject({ state: "waiting-for-keys", failures: 0 });
    book.update([stats("me", { encrypted: 90, dropped: { "no-send-key": 12 } })], 2000);
    expect(book.status("me", 2000)).toMatchObject({ state: "decrypting", frames: 90 });
    book.update([stats("me", { encrypted: 90, dropped: { "no-send-key": 12, "encrypt-failed": 3 } })], 3000);
    expect(book.status("me", 3000)).toMatchObject({ state: "decrypting", failures: 3 });
    book.update([stats("me", { encrypted: 90, dropped: { "no-send-key": 12, "encrypt-failed": 10 } })], 6000);
    expect(book.status("me", 6000)).toMatchObject({ state: "failing", failures: 10 });
    expect(book.statuses(6000).map((s) => s.participantId)).toEqual(["me"]);
    book.forget("me");
    expect(book.statuses(6000)).toEqual([]);
  });
});

describe("mediasoup-client adapter", () => {
  const protectedWith: string[] = [];
  const e2ee = {
    protectSender: (s: RTCRtpSender) => void protectedWith.push(`sender ${(s as unknown as { id: string }).id}`),
    protectReceiver: (r: RTCRtpReceiver, who: string) => void protectedWith.push(`receiver ${(r as unknown as { id: string }).id} of ${who}`),
    release: (t: RTCRtpSender | RTCRtpReceiver) => void protectedWith.push(`release ${(t as unknown as { id: string }).id}`),
  };
  const sender = { id: "s1" } as unknown as RTCRtpSender;
  const receiver = { id: "r1" } as unknown as RTCRtpReceiver;

  it("protects the sender and receiver mediasoup-client creates, keeping the app's own hooks", () => {
    protectedWith.length = 0;
    const own: string[] = [];
    const produce: mediasoup.ProducerOptions<{ label: string }> = protectProducerOptions(e2ee, {
      appData: { label: "camera" },
      onRtpSender: () => void own.push("app saw sender"),
    });
    produce.onRtpSender!(sender);
    const consume: mediasoup.ConsumerOptions = protectConsumerOptions(e2ee, "bob/phone", {
      id: "c1",
      producerId: "p1",
      kind: "video",
      rtpParameters: { codecs: [] },
    });
    consume.onRtpReceiver!(receiver);
    expect(produce.appData).toEqual({ label: "camera" });
    expect(own).toEqual(["app saw sender"]);
    expect(protectedWith).toEqual(["sender s1", "receiver r1 of bob/phone"]);
  });

  it("protects existing Producers and Consumers, and refuses ones without a WebRTC sender or receiver", () => {
    protectedWith.length = 0;
    const producer = { id: "p1", rtpSender: sender } as unknown as mediasoup.Producer;
    const consumer = { id: "c1", rtpReceiver: receiver } as unknown as mediasoup.Consumer;
    protectProducer(e2ee, producer);
    protectConsumer(e2ee, consumer, "bob/phone");
    releaseMediasoup(e2ee, producer);
    releaseMediasoup(e2ee, consumer);
    expect(protectedWith).toEqual(["sender s1", "receiver r1 of bob/phone", "release s1", "release r1"]);
    expect(() => protectProducer(e2ee, { id: "p2", rtpSender: undefined } as unknown as mediasoup.Producer)).toThrow(E2eeUnsupportedError);
    expect(() => protectConsumer(e2ee, { id: "c2", rtpReceiver: undefined } as unknown as mediasoup.Consumer, "x")).toThrow(E2eeUnsupportedError);
  });
});

describe("participant names", () => {
  it("takes the user part of a user/device id (user names may contain a slash, devices may not)", () => {
    expect(nameOf("Alice/dev1")).toBe("Alice");
    expect(nameOf("a/b/dev1")).toBe("a/b");
    expect(nameOf("nodevice")).toBe("nodevice");
  });
});

describe("serveDemo", () => {
  let root: string;
  let server: Server;
  let origin: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "conclave-demo-files-"));
    await mkdir(join(root, "assets"));
    await writeFile(join(root, "index.html"), "<!doctype html><title>demo</title>");
    await writeFile(join(root, "assets", "app-123.js"), "export {};");
    await writeFile(join(tmpdir(), "conclave-outside.txt"), "secret");
    const handle = serveDemo(root);
    server = createServer((req, res) => {
      if (!handle(req, res)) res.writeHead(404).end("not found");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(root, { recursive: true, force: true });
    await rm(join(tmpdir(), "conclave-outside.txt"), { force: true });
  });

  it("serves index.html at / and hashed assets as immutable", async () => {
    const index = await fetch(`${origin}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toMatch(/text\/html/);
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(await index.text()).toContain("<title>demo</title>");
    const asset = await fetch(`${origin}/assets/app-123.js`);
    expect(asset.headers.get("content-type")).toMatch(/text\/javascript/);
    expect(asset.headers.get("cache-control")).toMatch(/immutable/);
  });

  it("leaves missing files, other methods and paths outside the folder to the DS (404)", async () => {
    expect((await fetch(`${origin}/nope.js`)).status).toBe(404);
    expect((await fetch(`${origin}/`, { method: "POST" })).status).toBe(404);
    expect((await fetch(`${origin}/..%2fconclave-outside.txt`)).status).toBe(404);
    expect((await fetch(`${origin}/%E0%A4%A`)).status).toBe(404);
    expect((await fetch(`${origin}/assets`)).status).toBe(404);
  });
});
