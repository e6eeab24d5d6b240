import { Reader, Writer, fromHex } from "../../../keying/codec/index.js";
import { eachCase, expectBytes, expectEqual, type VectorKind } from "../kind.js";

interface DeserializationCase {
  vlbytes_header: string;
  length: number;
}

/** deserialization.json: each variable-length vector header decodes to its length and re-encodes to itself. */
const kind: VectorKind = {
  kind: "deserialization",
  usesProvider: false,
  matches: (file) => file.name === "deserialization.json",
  run: (file) =>
    eachCase(file.json as DeserializationCase[], (c) => {
      const r = new Reader(fromHex(c.vlbytes_header));
      expectEqual("length", r.varint(), c.length);
      r.done();
      expectBytes("vlbytes_header", new Writer().varint(c.length).finish(), c.vlbytes_header);
    }),
};
export default kind;
