import { fromHex } from "../../../keying/codec/bytes.js";
import { decode } from "../../../keying/codec/reader.js";
import { getCipherSuite, type CipherSuiteId } from "../../../keying/crypto/index.js";
import { confirmedTranscriptHash, interimTranscriptHash, verifyConfirmationTag } from "../../../keying/mls/framing.js";
import { ContentType, decodeAuthenticatedContent } from "../../../keying/mls/messages.js";
import { eachCase, expectBytes, type VectorKind } from "../kind.js";

interface TranscriptHashesCase {
  cipher_suite: number;
  confirmation_key: string;
  authenticated_content: string;
  interim_transcript_hash_before: string;
  confirmed_transcript_hash_after: string;
  interim_transcript_hash_after: string;
}

/** §8.2: one Commit's update of the confirmed and interim transcript hashes, and its confirmation tag. */
const kind: VectorKind = {
  kind: "transcript-hashes",
  usesProvider: true,
  matches: (f) => f.name === "transcript-hashes.json",
  run: (f, provider) =>
    eachCase(f.json as TranscriptHashesCase[], async (c) => {
      const suite = await getCipherSuite(c.cipher_suite as CipherSuiteId, provider);
      const ac = decode(decodeAuthenticatedContent, fromHex(c.authenticated_content));
      if (ac.content.contentType !== ContentType.commit || !ac.auth.confirmationTag) throw new Error("authenticated_content is not a commit");
      const confirmed = await confirmedTranscriptHash(suite, fromHex(c.interim_transcript_hash_before), { ...ac, signature: ac.auth.signature });
      expectBytes("confirmed_transcript_hash_after", confirmed, c.confirmed_transcript_hash_after);
      await verifyConfirmationTag(suite, fromHex(c.confirmation_key), confirmed, ac.auth.confirmationTag);
      expectBytes("interim_transcript_hash_after", await interimTranscriptHash(suite, confirmed, ac.auth.confirmationTag), c.interim_transcript_hash_after);
    }),
};

export default kind;
