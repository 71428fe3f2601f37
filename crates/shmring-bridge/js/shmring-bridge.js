// shmring-bridge.js: sends a MediaStreamTrack's frames to a shmring bridge,
// which writes each one into a shared-memory ring.
//
// A plain ES module; no build step. Needs MediaStreamTrackProcessor and
// WebCodecs' VideoFrame / AudioData (Chromium).
//
//   import { BridgeSender } from 'http://127.0.0.1:8787/shmring-bridge.js';
//   const sender = await BridgeSender.start('ws://127.0.0.1:8787/', track);
//   ...
//   await sender.close();
//
// Protocol (see the crate's README): one WebSocket per track. The first
// text message declares the stream; the bridge answers {"type":"ready"}.
// Each frame is one message: the header of ffi/include/shmring/media.h,
// then the planes (or samples), each at a 64-byte aligned offset with a
// 64-byte aligned stride. It travels by one of two lanes:
//   file       written into a file in the origin's private file system by a
//              worker (./shmring-file-lane.js); the WebSocket carries a
//              small control message per frame and the bridge's acks. The
//              default for video when the bridge finds the file.
//   websocket  each frame is one binary message.
// The bridge sends {"type":"dropped"} when a frame did not reach the ring
// (ring full); the sender then skips frames, and it skips frames on its
// own while earlier frames are still queued (the socket's bufferedAmount,
// or the file's unacknowledged bytes).

// The file lane's module is loaded when a sender first tries the lane: a
// page (or extension) that cannot load it still sends, as payloads.
let fileLaneModule = null;
const loadFileLane = (url) => {
  fileLaneModule ??= import(url ?? new URL('./shmring-file-lane.js', import.meta.url).href);
  return fileLaneModule;
};

export const VIDEO_MAGIC = 0x564d4853; // "SHMV"
export const AUDIO_MAGIC = 0x414d4853; // "SHMA"
export const MEDIA_VERSION = 1;
export const VIDEO_HEADER_SIZE = 128;
export const AUDIO_HEADER_SIZE = 64;
export const MEDIA_ALIGN = 64;

// WebCodecs pixel formats and their header numbers. RGBX/BGRX are sent
// as RGBA/BGRA (the alpha byte is then meaningless).
const PIXEL_FORMATS = { I420: 1, NV12: 2, RGBA: 3, RGBX: 3, BGRA: 4, BGRX: 4 };
const DECLARED_PIXEL_FORMAT = { I420: 'I420', NV12: 'NV12', RGBA: 'RGBA', RGBX: 'RGBA', BGRA: 'BGRA', BGRX: 'BGRA' };
const SAMPLE_FORMATS = { 'f32-planar': 1, s16: 2 };
// The header holds values in the host's byte order (the bridge runs on
// the same machine).
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const alignUp = (n) => Math.ceil(n / MEDIA_ALIGN) * MEDIA_ALIGN;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Where each plane of a `format` frame of `width` x `height` goes: the
// header, then the planes back to back, strides rounded up to 64 bytes,
// exactly as the C and Rust writers lay a frame out.
export function videoLayout(format, width, height) {
  const pixelFormat = PIXEL_FORMATS[format];
  if (!pixelFormat || !(width > 0) || !(height > 0)) return null;
  const cw = Math.ceil(width / 2);
  const ch = Math.ceil(height / 2);
  const geometry = {
    I420: [[width, height], [cw, ch], [cw, ch]],
    NV12: [[width, height], [2 * cw, ch]],
  }[format] ?? [[4 * width, height]];
  let end = VIDEO_HEADER_SIZE;
  const planes = geometry.map(([rowBytes, rows]) => {
    const plane = { offset: end, stride: alignUp(rowBytes), rows };
    end += plane.stride * rows;
    return plane;
  });
  return { kind: 'video', format: DECLARED_PIXEL_FORMAT[format], pixelFormat, width, height, planes, length: end };
}

export function writeVideoHeader(view, layout, { streamId = 0, timestampUs = 0, frameNumber = 0 }) {
  new Uint8Array(view.buffer, view.byteOffset, VIDEO_HEADER_SIZE).fill(0);
  const le = LITTLE_ENDIAN;
  view.setUint32(0, VIDEO_MAGIC, le);
  view.setUint16(4, MEDIA_VERSION, le);
  view.setUint16(6, VIDEO_HEADER_SIZE, le);
  view.setUint32(8, streamId, le);
  view.setUint32(12, layout.pixelFormat, le);
  view.setBigInt64(16, BigInt(Math.round(timestampUs)), le);
  view.setBigUint64(24, BigInt(frameNumber), le);
  view.setUint32(32, layout.width, le);
  view.setUint32(36, layout.height, le);
  view.setUint32(40, layout.planes.length, le);
  layout.planes.forEach((plane, i) => {
    view.setUint32(48 + 4 * i, plane.offset, le);
    view.setUint32(64 + 4 * i, plane.stride, le);
  });
}

// An audio chunk: the header, then samples at offset 64; planar channels
// each padded to a multiple of 64 bytes.
export function audioLayout(format, sampleRate, channels, frames) {
  const sampleFormat = SAMPLE_FORMATS[format];
  if (!sampleFormat || !(channels > 0) || !(sampleRate > 0)) return null;
  const channelStride = format === 'f32-planar' ? alignUp(4 * frames) : 0;
  const data = format === 'f32-planar' ? channelStride * channels : 2 * frames * channels;
  return {
    kind: 'audio', format, sampleFormat, sampleRate, channels, frames, channelStride,
    dataOffset: AUDIO_HEADER_SIZE, length: AUDIO_HEADER_SIZE + data,
  };
}

export function writeAudioHeader(view, layout, { streamId = 0, timestampUs = 0, frameNumber = 0 }) {
  new Uint8Array(view.buffer, view.byteOffset, AUDIO_HEADER_SIZE).fill(0);
  const le = LITTLE_ENDIAN;
  view.setUint32(0, AUDIO_MAGIC, le);
  view.setUint16(4, MEDIA_VERSION, le);
  view.setUint16(6, AUDIO_HEADER_SIZE, le);
  view.setUint32(8, streamId, le);
  view.setUint32(12, layout.sampleFormat, le);
  view.setBigInt64(16, BigInt(Math.round(timestampUs)), le);
  view.setBigUint64(24, BigInt(frameNumber), le);
  view.setUint32(32, layout.sampleRate, le);
  view.setUint32(36, layout.channels, le);
  view.setUint32(40, layout.frames, le);
  view.setUint32(44, layout.dataOffset, le);
  view.setUint32(48, layout.channelStride, le);
}

// How audio goes in the 'auto' lane, and why (measured: see the crate's
// README, "Measured").
export const AUDIO_AUTO_LANE = 'websocket';
const AUDIO_LANE_REASON = 'audio goes as WebSocket payloads (small records: the file lane saves nothing on them)';

// Writes a frame's message into `buffer` (its layout's length): the planes
// (or samples) at their offsets, then the header.
async function fillMessage(buffer, layout, frame, meta) {
  const view = new DataView(buffer);
  if (layout.kind === 'video') {
    await frame.copyTo(buffer, { layout: layout.planes.map(({ offset, stride }) => ({ offset, stride })) });
    writeVideoHeader(view, layout, meta);
    return;
  }
  if (layout.format === 'f32-planar') {
    for (let c = 0; c < layout.channels; c++) {
      const plane = new Float32Array(buffer, layout.dataOffset + c * layout.channelStride, layout.frames);
      frame.copyTo(plane, { planeIndex: c, format: 'f32-planar' });
    }
  } else {
    const samples = new Int16Array(buffer, layout.dataOffset, layout.frames * layout.channels);
    frame.copyTo(samples, { planeIndex: 0, format: 's16' });
  }
  writeAudioHeader(view, layout, meta);
}

function declarationOf(layout, label) {
  const declaration = layout.kind === 'video'
    ? { type: 'declare', kind: 'video', format: layout.format, width: layout.width, height: layout.height }
    : { type: 'declare', kind: 'audio', format: layout.format, sample_rate: layout.sampleRate, channels: layout.channels };
  if (label !== undefined) declaration.label = label;
  return declaration;
}

function sameStream(a, b) {
  if (!a || !b || a.kind !== b.kind) return false;
  return a.kind === 'video'
    ? a.format === b.format && a.width === b.width && a.height === b.height
    : a.format === b.format && a.sampleRate === b.sampleRate && a.channels === b.channels;
}

// Sends one track's frames to the bridge at `url` over one WebSocket.
//
// Options:
//   lane                 'auto' (default): the file lane for video when it
//                        can be had, else WebSocket payloads; audio goes as
//                        WebSocket payloads (AUDIO_AUTO_LANE). 'file': the
//                        file lane or nothing (start() rejects with the
//                        reason). 'websocket': payloads only.
//   fileSize             bytes of the file lane's file (default 32 MiB,
//                        DEFAULT_FILE_SIZE of shmring-file-lane.js)
//   fileLaneUrl          where shmring-file-lane.js is (default: beside this
//                        module; an extension whose resources need their
//                        dynamic URL passes chrome.runtime.getURL(...))
//   maxBufferedMessages  skip a frame while more than this many frames'
//                        bytes are still queued in the socket (default 2)
//   skipAfterDrop        frames to skip after a drop notice (video 1, audio 0)
//   audioFormat          'f32-planar' (default) or 's16'
//   onNotice(message)    every message from the bridge (ready, dropped, file, ack)
//   label                a string naming the stream, sent in every
//                        declaration (which participant, which track)
//
// sender.stats.lane says which lane carries the frames ('file' or
// 'websocket') and sender.stats.laneReason why.
export class BridgeSender {
  #ws;
  #track;
  #options;
  #reader = null;
  #declared = null;
  #readyWaiters = [];
  #buffer = null;
  #frameNumber = 0;
  #skip = 0;
  #stopping = false;
  #file = null;
  #fileWaiter = null;

  constructor(url, track, options = {}) {
    this.#track = track;
    this.kind = track.kind;
    this.#options = {
      maxBufferedMessages: 2,
      skipAfterDrop: track.kind === 'video' ? 1 : 0,
      audioFormat: 'f32-planar',
      onNotice: null,
      lane: 'auto',
      fileSize: undefined,
      fileLaneUrl: undefined,
      label: undefined,
      ...options,
    };
    this.streamId = null;
    this.closeCode = null;
    this.closeReason = '';
    this.stats = {
      captured: 0, sent: 0, bytes: 0, skippedBackpressure: 0, skippedAfterDrop: 0, droppedByBridge: 0, unsupported: 0,
      lane: 'websocket', laneReason: 'not started',
    };
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    this.opened = new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true });
    });
    this.closed = new Promise((resolve) => {
      ws.addEventListener('close', (event) => {
        this.closeCode = event.code;
        this.closeReason = event.reason;
        for (const waiter of [...this.#readyWaiters.splice(0), this.#fileWaiter].filter(Boolean)) {
          waiter.reject(new Error(`bridge closed the stream: ${event.code} ${event.reason}`));
        }
        this.#fileWaiter = null;
        resolve(event);
      });
    });
    ws.addEventListener('message', (event) => this.#onMessage(event.data));
    this.done = null;
  }

  // Connects, picks the lane and starts sending; resolves once frames can
  // flow.
  static async start(url, track, options) {
    const sender = new BridgeSender(url, track, options);
    await sender.opened;
    await sender.#chooseLane();
    sender.done = sender.#pump();
    return sender;
  }

  async #chooseLane() {
    const { lane } = this.#options;
    const wanted = lane === 'file' || (lane === 'auto' && (this.kind === 'video' || AUDIO_AUTO_LANE === 'file'));
    if (!wanted) {
      this.#useWebSocket(lane === 'websocket' ? 'asked for WebSocket payloads' : AUDIO_LANE_REASON);
      return;
    }
    let file = null;
    try {
      const { FileLane } = await loadFileLane(this.#options.fileLaneUrl).catch((error) => {
        throw new Error(`cannot load the file lane's module: ${error.message}`);
      });
      file = await FileLane.open(this.#options.fileSize);
      const answer = await new Promise((resolve, reject) => {
        this.#fileWaiter = { resolve, reject };
        this.#ws.send(JSON.stringify({ type: 'file', token: file.token, size: file.size }));
      });
      if (!answer.ok) throw new Error(`the bridge cannot use the file: ${answer.reason}`);
      this.#file = file;
      this.stats.lane = 'file';
      this.stats.laneReason = answer.warning ? `file lane (${answer.warning})` : 'file lane';
    } catch (error) {
      await file?.close().catch(() => {});
      if (lane === 'file') {
        this.#ws.close(1000, 'no file lane');
        throw new Error(`no file lane: ${error.message}`);
      }
      this.#useWebSocket(`no file lane: ${error.message}`);
    }
  }

  #useWebSocket(reason) {
    this.stats.lane = 'websocket';
    this.stats.laneReason = reason;
  }

  #onMessage(data) {
    if (typeof data !== 'string') return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === 'ready') {
      this.streamId = message.stream_id;
      this.maxMessage = message.max_message;
      for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve(message);
    } else if (message.type === 'dropped') {
      this.stats.droppedByBridge = message.dropped;
      this.#skip = Math.max(this.#skip, this.#options.skipAfterDrop);
    } else if (message.type === 'ack') {
      this.#file?.release(message.released);
    } else if (message.type === 'file') {
      this.#fileWaiter?.resolve(message);
      this.#fileWaiter = null;
    }
    this.#options.onNotice?.(message);
  }

  async #declare(layout) {
    const first = this.#declared === null;
    this.#declared = layout;
    const ready = new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
    this.#ws.send(JSON.stringify(declarationOf(layout, this.#options.label)));
    // The first declaration is awaited (the bridge may refuse the stream);
    // a later one (a new size) is not: the bridge reads it before the next
    // frame anyway.
    if (first) await ready;
    else ready.catch(() => {});
  }

  async #pump() {
    const processor = new MediaStreamTrackProcessor({ track: this.#track });
    this.#reader = processor.readable.getReader();
    for (;;) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      try {
        if (!this.#stopping && this.#ws.readyState === WebSocket.OPEN) await this.#send(value);
      } finally {
        value.close();
      }
      if (this.#stopping || this.#ws.readyState !== WebSocket.OPEN) break;
    }
  }

  #layoutOf(frame) {
    if (this.kind === 'video') {
      if (!frame.format) return null; // an opaque (GPU) frame
      return videoLayout(frame.format, frame.visibleRect.width, frame.visibleRect.height);
    }
    return audioLayout(this.#options.audioFormat, frame.sampleRate, frame.numberOfChannels, frame.numberOfFrames);
  }

  async #send(frame) {
    const frameNumber = this.#frameNumber++;
    this.stats.captured++;
    const layout = this.#layoutOf(frame);
    if (!layout) {
      this.stats.unsupported++;
      return;
    }
    if (!sameStream(layout, this.#declared)) await this.#declare(layout);
    if (this.#skip > 0) {
      this.#skip--;
      this.stats.skippedAfterDrop++;
      return;
    }
    const meta = { streamId: this.streamId ?? 0, timestampUs: frame.timestamp, frameNumber };
    if (this.#file) {
      await this.#sendThroughFile(frame, layout, meta);
      return;
    }
    if (this.#ws.bufferedAmount > this.#options.maxBufferedMessages * layout.length) {
      this.stats.skippedBackpressure++;
      return;
    }
    // One buffer, reused: send() copies the bytes out before it returns
    // (Chromium queues its own copy; bufferedAmount counts it).
    if (!this.#buffer || this.#buffer.byteLength !== layout.length) this.#buffer = new ArrayBuffer(layout.length);
    const buffer = this.#buffer;
    await fillMessage(buffer, layout, frame, meta);
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(buffer);
    this.stats.sent++;
    this.stats.bytes += layout.length;
  }

  // The file lane: the frame goes into the file at the next free position
  // (none free: skipped), then its position goes over the socket.
  async #sendThroughFile(frame, layout, meta) {
    const position = this.#file.reserve(layout.length);
    if (position === null) {
      this.stats.skippedBackpressure++;
      return;
    }
    const buffer = this.#file.buffer(layout.length);
    await fillMessage(buffer, layout, frame, meta);
    await this.#file.write(buffer, position);
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(JSON.stringify({ type: 'frame', position, length: layout.length, frame_number: meta.frameNumber }));
    this.stats.sent++;
    this.stats.bytes += layout.length;
  }

  // Stops capturing, lets queued frames go out (at most `drainMs`), then
  // closes the socket with 1000 and waits for the close to complete.
  async close({ drainMs = 2000 } = {}) {
    this.#stopping = true;
    try {
      await this.#reader?.cancel();
    } catch {
      // already closed
    }
    await this.done?.catch(() => {});
    const start = performance.now();
    // The bridge takes a file lane's frames in order before it reads our
    // close, so the file stays until the close handshake is over.
    while (this.#ws.readyState === WebSocket.OPEN && this.#ws.bufferedAmount > 0 && performance.now() - start < drainMs) {
      await sleep(10);
    }
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING) {
      this.#ws.close(1000, 'done');
    }
    const closed = await this.closed;
    await this.#file?.close().catch(() => {});
    return closed;
  }
}

// Sends `track` to the bridge at `url`; a shorthand for BridgeSender.start.
export function sendTrack(track, url, options) {
  return BridgeSender.start(url, track, options);
}
