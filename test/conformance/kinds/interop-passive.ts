import { passiveClientKind } from "../passive-client.js";

const OFFICIAL = new Set(["passive-client-welcome.json", "passive-client-handling-commit.json"]);

/**
 * The passive-client transcripts recorded from interop runs (interop-passive/: application, branch, commit,
 * external_join, external_proposals, welcome_join). They share their names with the interop configs, so they
 * are claimed by content (the passive-client format), whatever folder they are run from.
 */
export default passiveClientKind("interop-passive", (f) => !OFFICIAL.has(f.name));
