import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MlsDecodeError, Reader, bytesEqual, decode, encode, fromHex, toHex, utf8, type Decoder, type Encoder } from "../../keying/codec/index.js";
import { createHash } from "node:crypto";
import { CipherSuite, type SuitePrimitives } from "../../keying/crypto/cipher-suite.js";
import { SUITES, isCipherSuiteId } from "../../keying/crypto/suites.js";
import {
  ContentType,
  CredentialType,
  ExtensionType,
  LeafNodeSource,
  ProposalOrRefType,
  ProposalType,
  SenderType,
  WireFormat,
  decodeCommit,
  decodeCredential,
  decodeExternalSenders,
  decodeFramedContentTBS,
  decodeGroupSecrets,
  decodeKeyPackage,
  decodeLeafNodeTBS,
  decodeMLSMessage,
  decodePrivateMessageContent,
  decodeProposal,
  decodeRatchetTree,
  decodeReInit,
  decodeCapabilities,
  decodeRequiredCapabilities,
  decodeSenderData,
  encodeAuthenticatedContent,
  encodeCommit,
  encodeCredential,
  encodeExternalSenders,
  encodeFramedContentAuthData,
  encodeFramedContentTBS,
  encodeGroupSecrets,
  encodeKeyPackage,
  encodeLeafNodeTBS,
  encodeMLSMessage,
  encodePrivateMessageContent,
  encodeProposal,
  encodeRatchetTree,
  encodeReInit,
  encodeCapabilities,
  encodeRequiredCapabilities,
  encodeSenderData,
  findExtension,
  makeExtension,
  makeKeyPackageRef,
  makeProposalRef,
  type Credential,
  type FramedContent,
  type GroupContext,
  type KeyPackage,
  type LeafNode,
  type MLSMessage,
  type PrivateMessageContent,
} from "../../keying/mls/messages.js";
import { thrown } from "./expect-error.js";

const VECTORS = "/work/shared/mls-test-vectors/";
const messages = JSON.parse(readFileSync(VECTORS + "messages.json", "utf8")) as Record<string, string>[];

/** Decode without decode()'s safety net, so any non-MlsDecodeError escaping a decoder is seen. */
function strictDecode<T>(dec: Decoder<T>, bytes: Uint8Array): T {
  const r = new Reader(bytes);
  const v = dec(r);
  r.done();
  return v;
}

/** Either a clean decode whose re-encoding is the input (encodings are canonical), or an MlsDecodeError. */
function decodesCanonicallyOrRejects<T>(dec: Decoder<T>, enc: Encoder<T>, bytes: Uint8Array): "ok" | "rejected" {
  let value: T;
  try {
    value = strictDecode(dec, bytes);
  } catch (e) {
    if (e instanceof MlsDecodeError) return "rejected";
    throw new Error(`decoder threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  expect(toHex(encode(enc, value))).toBe(toHex(bytes));
  return "ok";
}

interface Subject {
  name: string;
  dec: Decoder<unknown>;
  enc: Encoder<unknown>;
}
const subject = <T>(name: string, dec: Decoder<T>, enc: Encoder<T>): Subject => ({ name, dec, enc } as Subject);
const SUBJECTS: Subject[] = [
  subject("mls_welcome", decodeMLSMessage, encodeMLSMessage),
  subject("mls_group_info", decodeMLSMessage, encodeMLSMessage),
  subject("mls_key_package", decodeMLSMessage, encodeMLSMessage),
  subject("public_message_proposal", decodeMLSMessage, encodeMLSMessage),
  subject("public_message_commit", decodeMLSMessage, encodeMLSMessage),
  subject("private_message", decodeMLSMessage, encodeMLSMessage),
  subject("ratchet_tree", decodeRatchetTree, encodeRatchetTree),
  subject("group_secrets", decodeGroupSecrets, encodeGroupSecrets),
  subject("commit", decodeCommit, encodeCommit),
  subject("re_init_proposal", decodeReInit, encodeReInit),
];

describe("decoders are total on mutated real structures", () => {
  for (const s of SUBJECTS) {
    for (const caseIndex of [0, 1]) {
      const bytes = fromHex(messages[caseIndex]![s.name]!);

      it(`${s.name} #${caseIndex}: the original round trips`, () => {
        expect(decodesCanonicallyOrRejects(s.dec, s.enc, bytes)).toBe("ok");
      });

      it(`${s.name} #${caseIndex}: every truncation is rejected`, () => {
        for (let n = 0; n < bytes.length; n++) {
          // each subject ends inside a length-prefixed field, so no proper prefix is a whole structure
          expect(decodesCanonicallyOrRejects(s.dec, s.enc, bytes.subarray(0, n))).toBe("rejected");
        }
      });

      it(`${s.name} #${caseIndex}: one extra byte is rejected`, () => {
        for (const extra of [0x00, 0x01, 0xff]) {
          const longer = new Uint8Array(bytes.length + 1);
          longer.set(bytes);
          longer[bytes.length] = extra;
          expect(thrown(MlsDecodeError, () => strictDecode(s.dec, longer)).code).toBe("trailing-bytes");
        }
      });

      it(`${s.name} #${caseIndex}: every bit flip in the first 64 bytes decodes canonically or is rejected`, () => {
        const outcomes = { ok: 0, rejected: 0 };
        for (let i = 0; i < Math.min(64, bytes.length); i++) {
          for (let bit = 0; bit < 8; bit++) {
            const flipped = bytes.slice();
            flipped[i]! ^= 1 << bit;
            outcomes[decodesCanonicallyOrRejects(s.dec, s.enc, flipped)]++;
          }
        }
        expect(outcomes.rejected).toBeGreaterThan(0);
      });
    }
  }

  it("an enormous declared length in a tiny buffer is truncated", () => {
    const huge = "bfffffff";
    const cases: [Decoder<unknown>, string][] = [
      [decodeRatchetTree, huge],
      [decodeMLSMessage, `00010003` + `0001` + huge], // welcome: secrets<V>
      [decodeMLSMessage, `00010005` + `00010001` + huge], // key package: init_key<V>
      [decodeMLSMessage, `00010001` + huge], // public message: group_id<V>
      [decodeCommit, huge],
      [decodeGroupSecrets, huge],
    ];
    for (const [dec, hex] of cases) {
      const e = thrown(MlsDecodeError, () => strictDecode(dec, fromHex(hex + "00")));
      expect(e.code).toBe("truncated");
    }
  });
});

describe("enumerations", () => {
  const keyPackageMsg = fromHex(messages[0]!.mls_key_package!);

  it("MLSMessage with an unknown version or wire format is rejected", () => {
    const wrongVersion = keyPackageMsg.slice();
    wrongVersion[1] = 2;
    expect(thrown(MlsDecodeError, () => decode(decodeMLSMessage, wrongVersion)).code).toBe("unknown-value");
    for (const wf of [0, 6, 0x0a0a]) {
      const m = keyPackageMsg.slice();
      m[2] = wf >> 8;
      m[3] = wf & 0xff;
      expect(thrown(MlsDecodeError, () => decode(decodeMLSMessage, m)).code).toBe("unknown-value");
    }
  });

  it("reserved and unknown sender / content types are rejected", () => {
    const pub = decode(decodeMLSMessage, fromHex(messages[0]!.public_message_application!));
    const bytes = encode(encodeMLSMessage, pub);
    if (pub.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("not a public message");
    const content = pub.publicMessage.content;
    // version(2) wire_format(2) group_id<V> epoch(8) sender_type
    const senderAt = 4 + encode((w, v: Uint8Array) => void w.opaque(v), content.groupId).length + 8;
    expect(bytes[senderAt]).toBe(content.sender.senderType);
    for (const bad of [0, 5, 255]) {
      const m = bytes.slice();
      m[senderAt] = bad;
      const e = thrown(MlsDecodeError, () => decode(decodeMLSMessage, m));
      expect(e.code).toBe("unknown-value");
      expect(e.offset).toBe(senderAt);
    }
  });

  it("unknown and GREASE proposal types are rejected; self_remove round trips with an empty body", () => {
    for (const t of [0, 0x000b, 0x0a0a, 0xffff]) {
      expect(thrown(MlsDecodeError, () => decode(decodeProposal, fromHex(t.toString(16).padStart(4, "0")))).code).toBe("unknown-value");
    }
    const selfRemove = encode(encodeProposal, { proposalType: ProposalType.selfRemove });
    expect(toHex(selfRemove)).toBe("000a");
    expect(decode(decodeProposal, selfRemove)).toEqual({ proposalType: ProposalType.selfRemove });
  });

  it("credentials: basic and x509 round trip, other types are rejected", () => {
    const creds: Credential[] = [
      { credentialType: CredentialType.basic, identity: utf8("alice") },
      { credentialType: CredentialType.x509, certificates: [fromHex("3082"), fromHex("308201")] },
      { credentialType: CredentialType.x509, certificates: [] },
    ];
    for (const c of creds) expect(decode(decodeCredential, encode(encodeCredential, c))).toEqual(c);
    expect(toHex(encode(encodeCredential, creds[1]!))).toBe("0002" + "07" + "023082" + "03308201");
    for (const t of ["0000", "0003", "0a0a"]) expect(thrown(MlsDecodeError, () => decode(decodeCredential, fromHex(t + "00"))).code).toBe("unknown-value");
  });
});

describe("extensions", () => {
  it("unknown and GREASE extension types in a KeyPackage are carried as opaque data and re-encode identically", () => {
    const msg = decode(decodeMLSMessage, fromHex(messages[0]!.mls_key_package!));
    if (msg.wireFormat !== WireFormat.mlsKeyPackage) throw new Error("not a key package");
    const kp: KeyPackage = {
      ...msg.keyPackage,
      extensions: [
        { extensionType: 0x0a0a, extensionData: fromHex("deadbeef") },
        { extensionType: 0xff00, extensionData: new Uint8Array(0) },
        makeExtension(ExtensionType.lastResort, () => {}, {}),
      ],
    };
    const bytes = encode(encodeKeyPackage, kp);
    const back = decode(decodeKeyPackage, bytes);
    expect(back.extensions).toEqual(kp.extensions);
    expect(toHex(encode(encodeKeyPackage, back))).toBe(toHex(bytes));
    expect(findExtension(back.extensions, ExtensionType.lastResort, () => ({}))).toEqual({});
    expect(findExtension(back.extensions, ExtensionType.externalPub, () => ({}))).toBeUndefined();
  });

  it("typed payloads round trip through makeExtension / findExtension", () => {
    const tree = decode(decodeRatchetTree, fromHex(messages[0]!.ratchet_tree!));
    const senders = [
      { signatureKey: fromHex("aa".repeat(32)), credential: { credentialType: CredentialType.basic, identity: utf8("ds") } as Credential },
      { signatureKey: fromHex("bb".repeat(32)), credential: { credentialType: CredentialType.x509, certificates: [fromHex("30")] } as Credential },
    ];
    const required = { extensionTypes: [ExtensionType.externalSenders], proposalTypes: [ProposalType.selfRemove], credentialTypes: [CredentialType.basic] };
    const exts = [
      makeExtension(ExtensionType.ratchetTree, encodeRatchetTree, tree),
      makeExtension(ExtensionType.externalSenders, encodeExternalSenders, senders),
      makeExtension(ExtensionType.requiredCapabilities, encodeRequiredCapabilities, required),
    ];
    expect(findExtension(exts, ExtensionType.ratchetTree, decodeRatchetTree)).toEqual(tree);
    expect(findExtension(exts, ExtensionType.externalSenders, decodeExternalSenders)).toEqual(senders);
    expect(findExtension(exts, ExtensionType.requiredCapabilities, decodeRequiredCapabilities)).toEqual(required);
    expect(toHex(exts[2]!.extensionData)).toBe("0200050200" + "0a" + "020001");
  });

  it("a typed payload with trailing bytes is rejected", () => {
    const ext = { extensionType: ExtensionType.requiredCapabilities, extensionData: fromHex("00000000") };
    expect(thrown(MlsDecodeError, () => findExtension([ext], ExtensionType.requiredCapabilities, decodeRequiredCapabilities)).code).toBe("trailing-bytes");
  });
});

describe("framing structures", () => {
  const commitMsg = decode(decodeMLSMessage, fromHex(messages[0]!.public_message_commit!)) as Extract<MLSMessage, { wireFormat: 1 }>;
  const commitContent = commitMsg.publicMessage.content as Extract<FramedContent, { contentType: 3 }>;

  it("PublicMessage carries confirmation_tag for commits and membership_tag for members", () => {
    expect(commitMsg.publicMessage.auth.confirmationTag).toBeInstanceOf(Uint8Array);
    expect(commitMsg.publicMessage.membershipTag !== undefined).toBe(commitContent.sender.senderType === SenderType.member);
    const app = decode(decodeMLSMessage, fromHex(messages[0]!.public_message_application!));
    if (app.wireFormat !== WireFormat.mlsPublicMessage) throw new Error("not a public message");
    expect(app.publicMessage.auth.confirmationTag).toBeUndefined();
  });

  it("auth data encoders refuse a confirmation_tag that does not match the content type", () => {
    const sig = fromHex("01");
    expect(() => encode(encodeFramedContentAuthData(ContentType.commit), { signature: sig })).toThrow(TypeError);
    expect(() => encode(encodeFramedContentAuthData(ContentType.application), { signature: sig, confirmationTag: sig })).toThrow(TypeError);
    expect(toHex(encode(encodeFramedContentAuthData(ContentType.commit), { signature: sig, confirmationTag: fromHex("0203") }))).toBe("0101020203");
  });

  it("PrivateMessageContent: zero padding is accepted and counted, any non-zero padding byte is rejected", () => {
    const content: PrivateMessageContent = {
      contentType: ContentType.commit,
      commit: commitContent.commit,
      auth: commitMsg.publicMessage.auth,
      paddingLength: 17,
    };
    const bytes = encode(encodePrivateMessageContent, content);
    expect(bytes.subarray(bytes.length - 17).every((b) => b === 0)).toBe(true);
    const back = decode(decodePrivateMessageContent(ContentType.commit), bytes);
    expect(back.paddingLength).toBe(17);
    expect(toHex(encode(encodePrivateMessageContent, back))).toBe(toHex(bytes));
    for (const at of [bytes.length - 17, bytes.length - 1]) {
      const bad = bytes.slice();
      bad[at] = 0x80;
      const e = thrown(MlsDecodeError, () => decode(decodePrivateMessageContent(ContentType.commit), bad));
      expect(e.code).toBe("invalid-value");
      expect(e.offset).toBe(bytes.length - 17);
    }
    const app = encode(encodePrivateMessageContent, { contentType: ContentType.application, applicationData: utf8("hi"), auth: { signature: fromHex("aa") }, paddingLength: 0 });
    expect(toHex(app)).toBe("026869" + "01aa");
  });

  it("FramedContentTBS includes the GroupContext exactly for member and new_member_commit senders", () => {
    const context: GroupContext = {
      version: 1,
      cipherSuite: 1,
      groupId: utf8("group"),
      epoch: 7n,
      treeHash: fromHex("11".repeat(32)),
      confirmedTranscriptHash: fromHex("22".repeat(32)),
      extensions: [],
    };
    const base = { ...commitContent };
    for (const sender of [{ senderType: SenderType.member, leafIndex: 3 } as const, { senderType: SenderType.newMemberCommit } as const]) {
      const tbs = { version: 1, wireFormat: WireFormat.mlsPublicMessage, content: { ...base, sender }, context };
      expect(decode(decodeFramedContentTBS, encode(encodeFramedContentTBS, tbs))).toEqual(tbs);
      expect(() => encode(encodeFramedContentTBS, { ...tbs, context: undefined })).toThrow(TypeError);
    }
    const external = { version: 1, wireFormat: WireFormat.mlsPublicMessage, content: { ...base, sender: { senderType: SenderType.external, senderIndex: 0 } as const } };
    expect(decode(decodeFramedContentTBS, encode(encodeFramedContentTBS, external))).toEqual(external);
    expect(() => encode(encodeFramedContentTBS, { ...external, context })).toThrow(TypeError);
  });

  it("LeafNodeTBS binds update and commit leaves to group_id and leaf_index, not key_package leaves", () => {
    const msg = decode(decodeMLSMessage, fromHex(messages[0]!.mls_key_package!));
    if (msg.wireFormat !== WireFormat.mlsKeyPackage) throw new Error("not a key package");
    const leaf: LeafNode = msg.keyPackage.leafNode;
    expect(leaf.leafNodeSource).toBe(LeafNodeSource.keyPackage);
    const kpTbs = encode(encodeLeafNodeTBS, { leafNode: leaf });
    expect(decode(decodeLeafNodeTBS, kpTbs).groupId).toBeUndefined();
    const { lifetime: _lifetime, signature: _signature, ...rest } = leaf as Extract<LeafNode, { leafNodeSource: 1 }>;
    const commitLeaf = { ...rest, leafNodeSource: LeafNodeSource.commit, parentHash: fromHex("33") } as const;
    const tbs = { leafNode: commitLeaf, groupId: utf8("g"), leafIndex: 5 };
    const bytes = encode(encodeLeafNodeTBS, tbs);
    expect(toHex(bytes.subarray(bytes.length - 6))).toBe("016700000005");
    expect(decode(decodeLeafNodeTBS, bytes)).toEqual(tbs);
    expect(() => encode(encodeLeafNodeTBS, { leafNode: commitLeaf })).toThrow(TypeError);
  });

  it("SenderData has a 4-byte reuse guard", () => {
    const sd = { leafIndex: 9, generation: 0xfffffffe, reuseGuard: fromHex("01020304") };
    expect(toHex(encode(encodeSenderData, sd))).toBe("00000009fffffffe01020304");
    expect(decode(decodeSenderData, encode(encodeSenderData, sd))).toEqual(sd);
    expect(() => encode(encodeSenderData, { ...sd, reuseGuard: fromHex("01") })).toThrow(TypeError);
  });
});

/** RefHash needs only the suite's hash: a node:crypto stub keeps these tests independent of the providers. */
function hashOnlySuite(id: number): CipherSuite {
  if (!isCipherSuiteId(id)) throw new Error(`suite ${id}`);
  const params = SUITES[id];
  const algorithm = params.hash.replace("-", "").toLowerCase();
  const hash = (data: Uint8Array): Promise<Uint8Array> => Promise.resolve(new Uint8Array(createHash(algorithm).update(data).digest()));
  return new CipherSuite({ params, hash } as unknown as SuitePrimitives);
}

describe("hash-based identifiers", () => {
  interface WelcomeCase {
    cipher_suite: number;
    key_package: string;
    welcome: string;
  }

  it("makeKeyPackageRef matches the new_member ref in welcome.json's Welcome (suites 1-7)", async () => {
    const cases = JSON.parse(readFileSync(VECTORS + "welcome.json", "utf8")) as WelcomeCase[];
    expect(cases.length).toBe(7);
    for (const c of cases) {
      const suite = hashOnlySuite(c.cipher_suite);
      const kpMsg = decode(decodeMLSMessage, fromHex(c.key_package));
      const welcomeMsg = decode(decodeMLSMessage, fromHex(c.welcome));
      if (kpMsg.wireFormat !== WireFormat.mlsKeyPackage || welcomeMsg.wireFormat !== WireFormat.mlsWelcome) throw new Error("wrong wire formats");
      const ref = await makeKeyPackageRef(suite, kpMsg.keyPackage);
      expect(ref.length).toBe(suite.params.Nh);
      expect(welcomeMsg.welcome.secrets.some((s) => bytesEqual(s.newMember, ref))).toBe(true);
      expect(toHex(await makeKeyPackageRef(suite, encode(encodeKeyPackage, kpMsg.keyPackage)))).toBe(toHex(ref));
    }
  });

  it("makeProposalRef matches the references of commits in passive-client-handling-commit.json", async () => {
    interface Epoch {
      proposals: string[];
      commit: string;
    }
    const cases = JSON.parse(readFileSync(VECTORS + "passive-client-handling-commit.json", "utf8")) as { cipher_suite: number; epochs: Epoch[] }[];
    let checked = 0;
    for (const c of cases) {
      const suite = hashOnlySuite(c.cipher_suite);
      for (const epoch of c.epochs) {
        const commit = decode(decodeMLSMessage, fromHex(epoch.commit));
        if (commit.wireFormat !== WireFormat.mlsPublicMessage || commit.publicMessage.content.contentType !== ContentType.commit) continue;
        const wanted = commit.publicMessage.content.commit.proposals.flatMap((p) => (p.type === ProposalOrRefType.reference ? [toHex(p.reference)] : []));
        const refs = new Set<string>();
        let allPublic = true;
        for (const hex of epoch.proposals) {
          const m = decode(decodeMLSMessage, fromHex(hex));
          if (m.wireFormat !== WireFormat.mlsPublicMessage) {
            allPublic = false;
            continue;
          }
          const ac = encode(encodeAuthenticatedContent, { wireFormat: WireFormat.mlsPublicMessage, content: m.publicMessage.content, auth: m.publicMessage.auth });
          refs.add(toHex(await makeProposalRef(suite, ac)));
        }
        checked += wanted.filter((w) => refs.has(w)).length;
        // proposals sent as PrivateMessage cannot be hashed without decrypting them
        if (allPublic) expect(wanted.filter((w) => !refs.has(w))).toEqual([]);
      }
    }
    expect(checked).toBeGreaterThan(0);
  });
});

describe("decoded Capabilities are shared", () => {
  const caps = (credentials: number[]) => ({ versions: [1], cipherSuites: [1, 2], extensions: [10], proposals: [], credentials });
  it("byte-identical Capabilities decode to one frozen object; any difference to another", () => {
    const a = decode(decodeCapabilities, encode(encodeCapabilities, caps([1])));
    const b = decode(decodeCapabilities, encode(encodeCapabilities, caps([1])));
    const c = decode(decodeCapabilities, encode(encodeCapabilities, caps([1, 2])));
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(c).toEqual(caps([1, 2]));
    expect(Object.isFrozen(a) && Object.isFrozen(a.credentials)).toBe(true);
    expect(() => (a.credentials as number[]).push(2)).toThrow(TypeError);
  });
});
