import { passiveClientKind } from "../passive-client.js";

/** Joining from a Welcome in many group shapes, with and without an external tree and PSKs. */
export default passiveClientKind("passive-client-welcome", (f) => f.name === "passive-client-welcome.json");
