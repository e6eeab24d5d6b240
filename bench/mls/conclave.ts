/**
 * The Conclave side of the MLS benchmark: keying/mls's MlsGroup with the native crypto provider, through
 * its public API (MLSMessage bytes in and out), on the fixture's member states.
 */
import { utf8 } from "../../keying/codec/bytes.js";
import { nativeProvider } from "../../keying/crypto/index.js";
import { MlsGroup, type CommitOutput, type CommitRequest } from "../../keying/mls/group.js";
import type { GroupState } from "../../keying/mls/group-state.js";
import { setState, type GroupFixture } from "./fixture.js";
import { measure, type Implementation, type Measured, type RunOptions } from "./scenario.js";

async function run(fixture: GroupFixture, options: RunOptions, record: (scenario: string, op: string, m: Measured) => void): Promise<void> {
  const { plan, welcomeJoiner, externalJoiner } = fixture;
  const { iterations } = options;
  const provider = nativeProvider;
  // Two MlsGroup objects whose states are set from the fixture before every timed run.
  const holder = async () => MlsGroup.create({ identity: await MlsGroup.generateIdentity(utf8("state holder"), { provider }), provider });
  const [committer, receiver] = [await holder(), await holder()];

  const timeCommit = (state: GroupState, request: CommitRequest, keep: (out: CommitOutput) => void) =>
    measure(
      iterations,
      async () => {
        const out = await committer.commit(request);
        keep(out);
        return out.commit.length;
      },
      () => {
        committer.clearPendingCommit();
        setState(committer, state);
      },
    );
  const timeProcess = (state: GroupState, message: Uint8Array) =>
    measure(
      iterations,
      async () => {
        await receiver.processMessage(message);
        return message.length;
      },
      () => setState(receiver, state),
    );

  let message: Uint8Array = new Uint8Array(0);
  for (const [scenario, pair] of [
    ["blank-tree", fixture.blank],
    ["full-tree", fixture.full],
  ] as const) {
    record(scenario, "commit", await timeCommit(pair.committer, { remove: [plan.removed] }, (out) => (message = out.commit)));
    record(scenario, "process", await timeProcess(pair.receiver, message));
  }

  // Joining by Welcome: an Add without a path, the ratchet tree inside the Welcome's GroupInfo.
  let welcome: Uint8Array = new Uint8Array(0);
  record("welcome", "commit", await timeCommit(fixture.full.committer, { add: [welcomeJoiner.message], path: false }, (out) => (welcome = out.welcome!)));
  record(
    "welcome",
    "join",
    await measure(iterations, async () => {
      await MlsGroup.joinFromWelcome({ welcome, keyPackage: welcomeJoiner.bundle, provider });
      return welcome.length;
    }),
  );

  // External join: a GroupInfo with external_pub and the ratchet tree, signed by the receiver.
  setState(receiver, fixture.full.receiver);
  const groupInfo = await receiver.groupInfo({ ratchetTree: true });
  record(
    "external-join",
    "join",
    await measure(iterations, async () => {
      message = (await MlsGroup.joinByExternalCommit({ groupInfo, identity: externalJoiner.identity, provider })).commit;
      return message.length;
    }),
  );
  record("external-join", "process", await timeProcess(fixture.full.receiver, message));
}

export const conclave: Implementation = { name: "conclave", run };
