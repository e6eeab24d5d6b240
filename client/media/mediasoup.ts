/**
 * Conclave's E2EE on a mediasoup call (mediasoup-client 3): every Producer's RTCRtpSender and every
 * Consumer's RTCRtpReceiver goes through the frame-transform worker, keyed by the call's MLS epochs.
 * mediasoup-client is not a dependency of this SDK; only its types are used here.
 *
 * Protection must be in place before a sender's first frame and before a receiver's answer is applied, so
 * the option helpers below hook mediasoup-client's onRtpSender/onRtpReceiver, which it calls right after
 * creating the sender or receiver, before negotiating:
 *
 *   const sendTransport = device.createSendTransport({ ...params, additionalSettings: e2ee.rtcConfiguration });
 *   const producer = await sendTransport.produce(protectProducerOptions(e2ee, { track }));
 *   const consumer = await recvTransport.consume(protectConsumerOptions(e2ee, peerId, consumerParams));
 *
 * `peerId` must name the producing participant as the call does ("user/device"): the worker reports that
 * participant's decrypt stats under it.
 */
import type { types as mediasoup } from "mediasoup-client";
import { E2eeUnsupportedError, type CallE2ee } from "./e2ee.js";

type Protection = Pick<CallE2ee, "protectSender" | "protectReceiver" | "release">;

/** `options` for `transport.produce()`, with the new sender protected as soon as mediasoup-client creates it. */
export function protectProducerOptions<A extends mediasoup.AppData>(e2ee: Protection, options: mediasoup.ProducerOptions<A>): mediasoup.ProducerOptions<A> {
  const chained = options.onRtpSender;
  return {
    ...options,
    onRtpSender: (sender) => {
      chained?.(sender);
      e2ee.protectSender(sender);
    },
  };
}

/** `options` for `transport.consume()`, with the new receiver protected as soon as mediasoup-client creates it. */
export function protectConsumerOptions<A extends mediasoup.AppData>(
  e2ee: Protection,
  participantId: string,
  options: mediasoup.ConsumerOptions<A>,
): mediasoup.ConsumerOptions<A> {
  const chained = options.onRtpReceiver;
  return {
    ...options,
    onRtpReceiver: (receiver) => {
      chained?.(receiver);
      e2ee.protectReceiver(receiver, participantId);
    },
  };
}

/**
 * Protects an existing Producer. Only safe where frames cannot leave before it: a Producer created
 * paused with `zeroRtpOnPause: true` (resume it afterwards), or on a transport created with
 * `additionalSettings: e2ee.rtcConfiguration` under the createEncodedStreams API, where Chromium holds
 * frames until the transform is attached. Prefer protectProducerOptions.
 */
export function protectProducer(e2ee: Protection, producer: mediasoup.Producer): void {
  const sender = producer.rtpSender;
  if (!sender) throw new E2eeUnsupportedError(`producer ${producer.id} has no RTCRtpSender (not a WebRTC handler): its media cannot be encrypted`);
  e2ee.protectSender(sender);
}

/** Protects an existing Consumer's receiver (frames before it are undecodable ciphertext, never exposed). */
export function protectConsumer(e2ee: Protection, consumer: mediasoup.Consumer, participantId: string): void {
  const receiver = consumer.rtpReceiver;
  if (!receiver) throw new E2eeUnsupportedError(`consumer ${consumer.id} has no RTCRtpReceiver (not a WebRTC handler): its media cannot be decrypted`);
  e2ee.protectReceiver(receiver, participantId);
}

/** Frees the worker's stream when a Producer or Consumer is closed. */
export function releaseMediasoup(e2ee: Protection, endpoint: mediasoup.Producer | mediasoup.Consumer): void {
  const target = "rtpSender" in endpoint ? endpoint.rtpSender : endpoint.rtpReceiver;
  if (target) e2ee.release(target);
}
