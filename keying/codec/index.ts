export { MlsDecodeError, type DecodeErrorCode } from "./errors.js";
export { Reader, decode, type Decoder } from "./reader.js";
export { Writer, encode, MAX_VARINT, type Encoder } from "./writer.js";
export { bytesEqual, concatBytes, fromHex, toHex, utf8 } from "./bytes.js";
