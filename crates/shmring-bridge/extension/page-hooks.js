// page-hooks.js: runs in the page's own world at document_start, before any
// script of the page, and finds every remote media track. It hands each
// track to the extension's isolated world (track-sender.js), which sends it
// to the bridge. This world opens no connection and loads nothing, and it
// never throws into the page: every hook calls the page's original function
// unchanged and does its own work inside try/catch.
//
// Where tracks come from:
//   - RTCPeerConnection `track` events. Remote tracks are created by
//     setRemoteDescription, so a listener is added to a peer connection the
//     first time the page calls it, before the original runs: whatever the
//     page uses itself (ontrack, addEventListener), this listener sees every
//     event.
//   - Media elements' srcObject: tracks of a stream the page plays that did
//     not come through a peer connection seen here (another frame's, say),
//     as long as they are not local captures (getUserMedia,
//     getDisplayMedia, captureStream, generators) nor clones of a track
//     already handed over.
//
// The two worlds share the DOM, not JavaScript objects. A MouseEvent's
// relatedTarget is an IDL attribute, so each world reads its own wrapper of
// the same object. At document_start (no page script has run yet) the
// isolated world announces a detached element, the relay, that way; from
// then on each track crosses as the relatedTarget of an event dispatched on
// the relay, which belongs to no document: the page never sees those
// events.
(() => {
  'use strict';

  // The events between the two worlds, named as in track-sender.js.
  const RELAY_EVENT = 'shmring-relay';
  const HOOKS_READY_EVENT = 'shmring-hooks-ready';
  const RELAY_TAKEN_EVENT = 'shmring-relay-taken';
  const LABEL_EVENT = 'shmring-track-label';
  const TRACK_EVENT = 'shmring-track';

  // The originals, before the page can replace them.
  const addListener = EventTarget.prototype.addEventListener;
  const removeListener = EventTarget.prototype.removeEventListener;
  const dispatch = EventTarget.prototype.dispatchEvent;
  const NativeMouseEvent = MouseEvent;
  const NativeCustomEvent = CustomEvent;
  const NativeMediaStream = globalThis.MediaStream;
  const getTracks = NativeMediaStream?.prototype.getTracks;
  const getterOf = (proto, name) => proto && Object.getOwnPropertyDescriptor(proto, name)?.get;
  const trackKind = getterOf(globalThis.MediaStreamTrack?.prototype, 'kind');
  const trackId = getterOf(globalThis.MediaStreamTrack?.prototype, 'id');
  const trackState = getterOf(globalThis.MediaStreamTrack?.prototype, 'readyState');
  const getSettings = globalThis.MediaStreamTrack?.prototype.getSettings;
  const streamId = getterOf(NativeMediaStream?.prototype, 'id');
  const toJson = JSON.stringify;
  // Tracks made by the page itself: never remote.
  const generatedTrackClasses = [
    'CanvasCaptureMediaStreamTrack', 'MediaStreamTrackGenerator', 'VideoTrackGenerator', 'BrowserCaptureMediaStreamTrack',
  ].map((name) => globalThis[name]).filter((cls) => typeof cls === 'function');

  if (!getTracks || !trackKind) return; // no media streams here: nothing to hook

  let relay = null;
  const handedOver = new WeakSet();
  const localTracks = new WeakSet();
  const cloneOf = new WeakMap();
  const peerNumbers = new WeakMap();
  const watched = new WeakSet();
  let nextPeer = 1;

  function takeRelay(event) {
    const candidate = event.relatedTarget;
    if (relay || !candidate) return;
    relay = candidate;
    removeListener.call(document, RELAY_EVENT, takeRelay, true);
    dispatch.call(relay, new NativeCustomEvent(RELAY_TAKEN_EVENT));
  }
  // Whichever world runs second completes the handshake: the isolated
  // world announces the relay as it starts, and again when it hears this.
  addListener.call(document, RELAY_EVENT, takeRelay, true);
  dispatch.call(document, new NativeCustomEvent(HOOKS_READY_EVENT));

  function peerNumber(pc) {
    let number = peerNumbers.get(pc);
    if (!number) {
      number = nextPeer++;
      peerNumbers.set(pc, number);
    }
    return number;
  }

  function handOver(track, label) {
    if (!relay || handedOver.has(track)) return;
    handedOver.add(track);
    dispatch.call(relay, new NativeCustomEvent(LABEL_EVENT, { detail: toJson(label) }));
    dispatch.call(relay, new NativeMouseEvent(TRACK_EVENT, { relatedTarget: track }));
  }

  // A participant is the remote stream a track belongs to (a participant's
  // audio and video share it), or else its peer connection and transceiver.
  function onTrack(event) {
    try {
      const track = event.track;
      const stream = event.streams?.[0];
      const peer = peerNumber(this);
      const mid = event.transceiver?.mid ?? '';
      const participant = stream ? streamId.call(stream) : `pc${peer}/mid${mid}`;
      const kind = trackKind.call(track);
      handOver(track, { participant, pc: peer, kind, track: trackId.call(track), source: 'peer-connection' });
    } catch {
      // never into the page
    }
  }

  function watchPeer(pc) {
    if (watched.has(pc)) return;
    watched.add(pc);
    peerNumber(pc);
    addListener.call(pc, 'track', onTrack);
  }

  function originOf(track) {
    let original = track;
    while (cloneOf.has(original)) original = cloneOf.get(original);
    return original;
  }

  function isRemote(track) {
    const original = originOf(track);
    if (handedOver.has(original) || localTracks.has(original)) return false;
    if (generatedTrackClasses.some((cls) => original instanceof cls)) return false;
    if (trackState.call(original) !== 'live') return false;
    // Capture devices have an id; remote and synthetic tracks do not.
    return !getSettings?.call(original)?.deviceId;
  }

  function fromElement(stream) {
    for (const track of getTracks.call(stream)) {
      if (!isRemote(track)) continue;
      const participant = streamId.call(stream);
      handOver(track, { participant, pc: 0, kind: trackKind.call(track), track: trackId.call(track), source: 'media-element' });
    }
  }

  function markLocal(result) {
    try {
      const tracks = result instanceof NativeMediaStream ? getTracks.call(result) : [result];
      for (const track of tracks) localTracks.add(track);
    } catch {
      // never into the page
    }
  }

  // Replaces `proto[name]` by a method that runs `before` (errors
  // swallowed), then the original with the same receiver and arguments, and
  // returns the original's result (passed to `after`, errors swallowed).
  function wrapMethod(proto, name, { before, after }) {
    const descriptor = proto && Object.getOwnPropertyDescriptor(proto, name);
    if (!descriptor || typeof descriptor.value !== 'function') return;
    const original = descriptor.value;
    const wrapped = {
      [name](...args) {
        try {
          before?.(this);
        } catch {
          // never into the page
        }
        const result = original.apply(this, args);
        try {
          after?.(result, this);
        } catch {
          // never into the page
        }
        return result;
      },
    }[name];
    Object.defineProperty(wrapped, 'length', { value: original.length });
    Object.defineProperty(proto, name, { ...descriptor, value: wrapped });
  }

  const whenSettled = (mark) => (promise) => promise?.then?.(mark, () => {});

  wrapMethod(globalThis.RTCPeerConnection?.prototype, 'setRemoteDescription', { before: watchPeer });
  wrapMethod(globalThis.MediaDevices?.prototype, 'getUserMedia', { after: whenSettled(markLocal) });
  wrapMethod(globalThis.MediaDevices?.prototype, 'getDisplayMedia', { after: whenSettled(markLocal) });
  wrapMethod(globalThis.HTMLCanvasElement?.prototype, 'captureStream', { after: markLocal });
  wrapMethod(globalThis.HTMLMediaElement?.prototype, 'captureStream', { after: markLocal });
  wrapMethod(globalThis.MediaStreamTrack?.prototype, 'clone', {
    after: (clone, original) => cloneOf.set(clone, original),
  });

  const srcObject = Object.getOwnPropertyDescriptor(globalThis.HTMLMediaElement?.prototype ?? {}, 'srcObject');
  if (srcObject?.set) {
    const originalSet = srcObject.set;
    const set = Object.getOwnPropertyDescriptor({
      set srcObject(value) {
        try {
          if (value instanceof NativeMediaStream) fromElement(value);
        } catch {
          // never into the page
        }
        originalSet.call(this, value);
      },
    }, 'srcObject').set;
    Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', { ...srcObject, set });
  }
})();
