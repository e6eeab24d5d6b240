import { passiveClientKind } from "../passive-client.js";

/** Following commits of every proposal type, by value and by reference, after joining. */
export default passiveClientKind("passive-client-handling-commit", (f) => f.name === "passive-client-handling-commit.json");
