/**
 * A linked peer's malformed request is refused with a typed error. Handlers that validate before their first
 * await throw synchronously; that throw must not escape the Socket.IO listener (it would end the DS process),
 * and no failure in a link's socket handlers may become an unhandled rejection (which ends it too).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FederationError } from "../../sfu-signaling/federation/index.js";
import type { LinkRequests } from "../../sfu-signaling/federation/protocol.js";
import { DsError } from "../../sfu-signaling/errors.js";
import { importPublicKey } from "../../sfu-signaling/federation/identity.js";
import { PeerLink } from "../../sfu-signaling/federation/link.js";
import { startProviders, stopProviders, type Provider } from "./federation-helpers.js";

describe("federation: malformed link requests", () => {
  let providers: Map<string, Provider>;
  let link: PeerLink;

  beforeAll(async () => {
    providers = await startProviders([{ domain: "a.example" }, { domain: "b.example" }]);
    const a = providers.get("a.example")!;
    const b = providers.get("b.example")!;
    link = new PeerLink({
      domain: "b.example",
      key: b.key.privateKey,
      peer: { domain: "a.example", url: a.linkUrl, publicKey: a.key.publicKey },
      peerKey: importPublicKey(a.key.publicKey),
      onReady: () => undefined,
      onPush: () => undefined,
      log: () => undefined,
      requestTimeoutMs: 5_000,
    });
    await link.whenReady();
  });
  afterAll(async () => {
    link.close();
    await stopProviders(providers);
  });

  it("a failure while answering the peer's challenge is logged, not an unhandled rejection", async () => {
    const a = providers.get("a.example")!;
    const b = providers.get("b.example")!;
    const lines: string[] = [];
    const throwing = new PeerLink({
      domain: "b.example",
      key: b.key.privateKey,
      peer: { domain: "a.example", url: a.linkUrl, publicKey: a.key.publicKey },
      peerKey: importPublicKey(a.key.publicKey),
      onReady: () => {
        throw new Error("onReady failed");
      },
      onPush: () => undefined,
      log: (line) => lines.push(line),
      requestTimeoutMs: 5_000,
    });
    try {
      await throwing.whenReady();
      await expect.poll(() => lines.some((l) => l.includes("handshake failed: Error: onReady failed"))).toBe(true);
    } finally {
      throwing.close();
    }
  });

  for (const [event, once] of [
    ["fed:act", true],
    ["fed:act", false],
    ["fed:follow", false],
    ["fed:read", false],
  ] as const) {
    it(`refuses a malformed ${event}${once ? " (once)" : ""} and keeps serving`, async () => {
      const e = await link.request(event, { nonsense: 1 } as unknown as LinkRequests[typeof event], { once }).catch((err: unknown) => err);
      expect(e instanceof FederationError || e instanceof DsError).toBe(true);
      expect((e as { code: string }).code).toBe("invalid-payload");
      // The DS is still up and answering on the same link.
      const ok = await link.request("fed:locate", { groupId: "00" });
      expect(ok.hosted).toBe(false);
    });
  }
});
