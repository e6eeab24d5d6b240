import { decode, encode, fromHex, type Decoder, type Encoder } from "../../../keying/codec/index.js";
import {
  WireFormat,
  decodeAdd,
  decodeCommit,
  decodeExternalInit,
  decodeGroupContextExtensions,
  decodeGroupSecrets,
  decodeMLSMessage,
  decodePreSharedKey,
  decodeRatchetTree,
  decodeReInit,
  decodeRemove,
  decodeUpdate,
  encodeAdd,
  encodeCommit,
  encodeExternalInit,
  encodeGroupContextExtensions,
  encodeGroupSecrets,
  encodeMLSMessage,
  encodePreSharedKey,
  encodeRatchetTree,
  encodeReInit,
  encodeRemove,
  encodeUpdate,
  ContentType,
  type MLSMessage,
} from "../../../keying/mls/messages.js";
import { eachCase, expectBytes, expectEqual, type VectorKind } from "../kind.js";

type MessagesCase = Record<string, string>;

/** Decodes one field's bytes with its structure, checks what it must be, and re-encodes to the same bytes. */
type FieldCheck = (name: string, hex: string) => void;

function field<T>(dec: Decoder<T>, enc: Encoder<T>, check?: (v: T) => void): FieldCheck {
  return (name, hex) => {
    let value: T;
    try {
      value = decode(dec, fromHex(hex));
    } catch (e) {
      throw new Error(`${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
    check?.(value);
    expectBytes(name, encode(enc, value), hex);
  };
}

function mlsMessage(wireFormat: WireFormat, contentType?: ContentType): FieldCheck {
  return field(decodeMLSMessage, encodeMLSMessage, (m: MLSMessage) => {
    expectEqual("wire_format", m.wireFormat, wireFormat);
    if (contentType !== undefined && m.wireFormat === WireFormat.mlsPublicMessage) expectEqual("content_type", m.publicMessage.content.contentType, contentType);
  });
}

const FIELDS: Record<string, FieldCheck> = {
  mls_welcome: mlsMessage(WireFormat.mlsWelcome),
  mls_group_info: mlsMessage(WireFormat.mlsGroupInfo),
  mls_key_package: mlsMessage(WireFormat.mlsKeyPackage),
  ratchet_tree: field(decodeRatchetTree, encodeRatchetTree),
  group_secrets: field(decodeGroupSecrets, encodeGroupSecrets),
  add_proposal: field(decodeAdd, encodeAdd),
  update_proposal: field(decodeUpdate, encodeUpdate),
  remove_proposal: field(decodeRemove, encodeRemove),
  pre_shared_key_proposal: field(decodePreSharedKey, encodePreSharedKey),
  re_init_proposal: field(decodeReInit, encodeReInit),
  external_init_proposal: field(decodeExternalInit, encodeExternalInit),
  group_context_extensions_proposal: field(decodeGroupContextExtensions, encodeGroupContextExtensions),
  commit: field(decodeCommit, encodeCommit),
  public_message_application: mlsMessage(WireFormat.mlsPublicMessage, ContentType.application),
  public_message_proposal: mlsMessage(WireFormat.mlsPublicMessage, ContentType.proposal),
  public_message_commit: mlsMessage(WireFormat.mlsPublicMessage, ContentType.commit),
  private_message: mlsMessage(WireFormat.mlsPrivateMessage),
};

/** messages.json: every field decodes with its structure and re-encodes to the identical bytes. */
const kind: VectorKind = {
  kind: "messages",
  usesProvider: false,
  matches: (file) => file.name === "messages.json",
  run: (file) =>
    eachCase(file.json as MessagesCase[], (c) => {
      for (const [name, check] of Object.entries(FIELDS)) {
        const hex = c[name];
        if (hex === undefined) throw new Error(`${name} missing`);
        check(name, hex);
      }
    }),
};
export default kind;
