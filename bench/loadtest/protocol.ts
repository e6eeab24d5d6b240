/**
 * Messages between the load test's coordinator (main thread) and its participant workers. Times are
 * milliseconds since the Unix epoch as `performance.timeOrigin + performance.now()`, which every thread
 * and process on the machine shares (the DS's `at` stamps are Date.now(), the same clock at 1 ms grain).
 */

export interface WorkerSetup {
  /** The DS's base URL (it serves /dev/token: the participants fetch their own tokens). */
  readonly url: string;
  readonly room: string;
  /** Most connections a worker opens at once while preparing. */
  readonly connectWindow: number;
}

export type Command =
  | { readonly t: "prepare"; readonly ids: readonly number[] }
  | { readonly t: "join"; readonly id: number }
  | { readonly t: "leave"; readonly id: number }
  /** This thread's CPU time so far. */
  | { readonly t: "cpu" }
  /** Every joined participant's current epoch and epoch_authenticator. */
  | { readonly t: "final" }
  /** CPU-profile this thread (node:inspector) from `start` to `stop`: `<dir>/<prefix>-<threadId>.cpuprofile`. */
  | { readonly t: "profile-start" }
  | { readonly t: "profile-stop"; readonly dir: string; readonly prefix: string }
  | { readonly t: "shutdown" };

/** [participant, epoch, installedAt, commitReceivedAt (NaN when the epoch came from its own join), epoch_authenticator hex] */
export type Install = readonly [id: number, epoch: number, installedAt: number, commitReceivedAt: number, authenticator: string];

/** A sequenced commit as one participant of the worker first received it: [epoch it starts, DS acceptance time, bytes, receivedAt]. */
export type CommitSeen = readonly [epoch: number, at: number, bytes: number, receivedAt: number];

/** A member-left event: [identity ("user/device"), epoch it left in]. */
export type DepartureSeen = readonly [identity: string, epoch: number];

export interface SessionProblem {
  readonly id: number;
  readonly code: string;
  readonly message: string;
  readonly recovering: boolean;
}

export interface FinalState {
  readonly id: number;
  readonly epoch: number;
  readonly authenticator: string;
}

export type Report =
  | { readonly t: "prepared"; readonly id: number }
  | { readonly t: "joined"; readonly id: number; readonly epoch: number; readonly requestedAt: number; readonly doneAt: number }
  | { readonly t: "left"; readonly id: number; readonly requestedAt: number; readonly doneAt: number }
  | { readonly t: "failed"; readonly id: number; readonly what: "prepare" | "join" | "leave"; readonly message: string }
  | {
      readonly t: "events";
      readonly installs: readonly Install[];
      readonly commits: readonly CommitSeen[];
      readonly departures: readonly DepartureSeen[];
      readonly problems: readonly SessionProblem[];
    }
  | { readonly t: "cpu"; readonly cpuMs: number; readonly source: "thread" | "event-loop"; readonly eventLoopDelayP99Ms: number }
  | { readonly t: "final"; readonly states: readonly FinalState[] }
  | { readonly t: "profiled" }
  | { readonly t: "shutdown" };

/** The name a participant connects under; its MLS identity is `${name}/${DEVICE}`. */
export function participantName(id: number): string {
  return `lt${id}`;
}

export const DEVICE = "bench";

export function identityOf(id: number): string {
  return `${participantName(id)}/${DEVICE}`;
}

export function now(): number {
  return performance.timeOrigin + performance.now();
}
