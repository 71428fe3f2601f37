// shmring-file-lane.js: the file lane of the shmring bridge's JS client.
//
// Frames go through a fixed-size file in the origin's private file system
// (OPFS) instead of WebSocket payloads: a dedicated worker holds a
// FileSystemSyncAccessHandle on it and writes each message (the same media
// header and planes as a binary message) at the next position of a ring
// laid over the file's data region. The WebSocket then carries only a
// small control message per frame, {"type":"frame","position",...}, and
// the bridge's acknowledgements, {"type":"ack","released":...}, sent each
// time a quarter of the file has been taken; the page
// never writes over bytes the bridge has not acknowledged (with no room it
// skips the frame). With the browser's profile on tmpfs the file is an
// ordinary file in memory, which the bridge finds by the token written at
// its offset 0 and reads with pread straight into the ring.
//
// Buffers move between the page and the worker by transfer, never by copy.
//
// File layout (host byte order; the bridge's `frame_file` module):
//   0   magic "SHMRFILE"       8   version (u32) = 1
//   12  data offset (u32)      16  token (16 random bytes)
//   32  file size (u64)        ... zeros up to the data offset (4096)
// A frame at ring position P lies at DATA_OFFSET + P % capacity and never
// crosses the end of the file; P only grows.

export const FILE_MAGIC = 'SHMRFILE';
export const FILE_VERSION = 1;
export const FILE_HEADER_SIZE = 64;
export const FILE_DATA_OFFSET = 4096;
export const DEFAULT_FILE_SIZE = 32 << 20;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Runs inside the worker (its source becomes the worker's script).
function frameFileWorker() {
  let root = null;
  let handle = null;
  let name = null;
  const reply = (message, transfer = []) => self.postMessage(message, transfer);
  self.onmessage = async ({ data }) => {
    try {
      if (data.op === 'open') {
        root = await navigator.storage.getDirectory();
        name = data.name;
        const file = await root.getFileHandle(name, { create: true });
        handle = await file.createSyncAccessHandle();
        handle.truncate(data.size);
        handle.write(data.header, { at: 0 });
        handle.flush();
        reply({ op: 'open', ok: true });
      } else if (data.op === 'write') {
        // Visible to other processes as soon as it returns: the handle
        // writes straight into the file (no flush, which would sync to
        // the disk).
        const written = handle.write(new Uint8Array(data.buffer, 0, data.length), { at: data.at });
        if (written !== data.length) throw new Error(`wrote ${written} of ${data.length} bytes`);
        reply({ op: 'write', id: data.id, ok: true, buffer: data.buffer }, [data.buffer]);
      } else if (data.op === 'close') {
        handle?.close();
        handle = null;
        if (root && name) await root.removeEntry(name);
        reply({ op: 'close', ok: true });
      }
    } catch (error) {
      const transfer = data.buffer ? [data.buffer] : [];
      reply({ op: data.op, id: data.id, ok: false, error: `${error.name}: ${error.message}`, buffer: data.buffer }, transfer);
    }
  };
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// The header the page writes at offset 0.
export function fileHeader(token, size) {
  const header = new Uint8Array(FILE_HEADER_SIZE);
  const view = new DataView(header.buffer);
  header.set(new TextEncoder().encode(FILE_MAGIC), 0);
  view.setUint32(8, FILE_VERSION, LITTLE_ENDIAN);
  view.setUint32(12, FILE_DATA_OFFSET, LITTLE_ENDIAN);
  header.set(token, 16);
  view.setBigUint64(32, BigInt(size), LITTLE_ENDIAN);
  return header;
}

// One stream's frame file and the worker that writes it.
export class FileLane {
  #worker;
  #pending = new Map();
  #nextId = 0;
  #written = 0; // ring position after the last frame placed
  #released = 0; // everything before it has been acknowledged
  #spare = null; // a buffer back from the worker, for the next frame

  constructor(worker, token, size) {
    this.#worker = worker;
    this.token = hex(token);
    this.size = size;
    this.capacity = size - FILE_DATA_OFFSET;
    worker.onmessage = ({ data }) => {
      const waiter = this.#pending.get(data.id ?? data.op);
      if (!waiter) return;
      this.#pending.delete(data.id ?? data.op);
      if (data.buffer) this.#spare = data.buffer;
      if (data.ok) waiter.resolve(data);
      else waiter.reject(new Error(data.error));
    };
    worker.onerror = (event) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`file lane worker: ${event.message}`));
      this.#pending.clear();
    };
  }

  #call(message, transfer = []) {
    const key = message.id ?? message.op;
    const done = new Promise((resolve, reject) => this.#pending.set(key, { resolve, reject }));
    this.#worker.postMessage(message, transfer);
    return done;
  }

  // Creates the file (`size` bytes) in a new worker; throws with the reason
  // when there is no OPFS, no worker, or no sync access handle.
  static async open(size = DEFAULT_FILE_SIZE) {
    if (typeof navigator.storage?.getDirectory !== 'function') {
      throw new Error('no origin private file system here (navigator.storage.getDirectory is missing)');
    }
    if (!(size >= FILE_DATA_OFFSET + (1 << 20))) throw new Error(`file size ${size} too small`);
    const source = `(${frameFileWorker.toString()})();`;
    const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
    let worker;
    try {
      worker = new Worker(url);
    } catch (error) {
      throw new Error(`cannot start the file lane's worker: ${error.message}`);
    } finally {
      URL.revokeObjectURL(url);
    }
    const token = crypto.getRandomValues(new Uint8Array(16));
    const lane = new FileLane(worker, token, size);
    try {
      await lane.#call({ op: 'open', name: `shmring-${lane.token}.frames`, size, header: fileHeader(token, size) });
    } catch (error) {
      worker.terminate();
      throw new Error(`cannot open a file in the origin private file system: ${error.message}`);
    }
    return lane;
  }

  // Places a frame of `length` bytes: its ring position, or null when the
  // bytes it needs are not acknowledged yet (the caller skips the frame).
  reserve(length) {
    if (length > this.capacity) return null;
    let at = this.#written;
    const offset = at % this.capacity;
    if (offset + length > this.capacity) at += this.capacity - offset; // to the next lap
    if (at + length - this.#released > this.capacity) return null;
    this.#written = at + length;
    return at;
  }

  // An ArrayBuffer of exactly `length` bytes for the next frame: the one
  // the worker gave back when it fits, else a new one.
  buffer(length) {
    const spare = this.#spare;
    this.#spare = null;
    return spare && spare.byteLength === length ? spare : new ArrayBuffer(length);
  }

  // Hands `buffer` (filled) to the worker, which writes it at `position`;
  // resolves once it is in the file.
  write(buffer, position) {
    const id = this.#nextId++;
    const at = FILE_DATA_OFFSET + (position % this.capacity);
    return this.#call({ op: 'write', id, buffer, length: buffer.byteLength, at }, [buffer]);
  }

  // The bridge has taken everything before `position`.
  release(position) {
    if (position > this.#released) this.#released = position;
  }

  // Closes the handle, removes the file and stops the worker.
  async close() {
    try {
      await this.#call({ op: 'close' });
    } finally {
      this.#worker.terminate();
    }
  }
}
