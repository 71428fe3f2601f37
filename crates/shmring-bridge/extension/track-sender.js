// track-sender.js: the extension's isolated world. It receives each remote
// track found by page-hooks.js and sends it to the bridge named in
// config.json with the JS client (shmring-bridge.js, shipped beside this
// file): one sender per track, labelled, closed when the track ends.
//
// Running here rather than in the page's world keeps the page's
// Content-Security-Policy (connect-src) away from the bridge's WebSocket,
// and keeps our errors out of the page. Progress goes to this world's
// console as `shmring-extension: ...` lines, which page scripts cannot read.
//
// Chromium pulls a remote WebRTC audio track only while something plays it
// out: MediaStreamTrackProcessor on a remote audio track that no media
// element plays yields no AudioData. Each remote audio track is therefore
// also played by a muted, detached <audio> element of ours.
(() => {
  'use strict';

  // The events between the two worlds, named as in page-hooks.js.
  const RELAY_EVENT = 'shmring-relay';
  const HOOKS_READY_EVENT = 'shmring-hooks-ready';
  const RELAY_TAKEN_EVENT = 'shmring-relay-taken';
  const LABEL_EVENT = 'shmring-track-label';
  const TRACK_EVENT = 'shmring-track';
  // How often a sender checks that its track still lives: the page ending a
  // track with stop() fires no `ended` event.
  const LIVENESS_MS = 500;

  const log = (message) => console.log(`shmring-extension: ${message}`);

  const relay = document.createElement('span');
  const announce = () => document.dispatchEvent(new MouseEvent(RELAY_EVENT, { relatedTarget: relay }));
  document.addEventListener(HOOKS_READY_EVENT, announce, true);
  relay.addEventListener(RELAY_TAKEN_EVENT, () => document.removeEventListener(HOOKS_READY_EVENT, announce, true));
  announce();

  let loaded = null;
  // Loaded on the first track only: a page that never receives one costs
  // nothing more than the listeners above.
  function load() {
    loaded ??= Promise.all([
      fetch(chrome.runtime.getURL('config.json')).then((response) => response.json()),
      import(chrome.runtime.getURL('shmring-bridge.js')),
    ]);
    return loaded;
  }

  let label = null;
  relay.addEventListener(LABEL_EVENT, (event) => {
    label = typeof event.detail === 'string' ? event.detail : null;
  });
  relay.addEventListener(TRACK_EVENT, (event) => {
    const track = event.relatedTarget;
    const trackLabel = label;
    label = null;
    if (!(track instanceof MediaStreamTrack) || trackLabel === null) return;
    send(track, trackLabel).catch((error) => log(`error ${trackLabel}: ${error?.message ?? error}`));
  });

  // Plays `track` (audio) out of a muted element, so Chromium pulls it.
  function playOut(track) {
    const element = new Audio();
    element.muted = true;
    element.srcObject = new MediaStream([track]);
    element.play().catch(() => {});
    return () => {
      element.pause();
      element.srcObject = null;
    };
  }

  async function send(track, trackLabel) {
    const [config, { BridgeSender }] = await load();
    if (track.readyState !== 'live') return;
    const stopPlaying = track.kind === 'audio' ? playOut(track) : () => {};
    let announced = false;
    let sender;
    try {
      sender = await BridgeSender.start(config.bridge, track, {
        ...(config.sender ?? {}),
        label: trackLabel,
        // The client's own relative import resolves to a URL that
        // web_accessible_resources' dynamic ids refuse: name the module.
        fileLaneUrl: chrome.runtime.getURL('shmring-file-lane.js'),
        onNotice: (notice) => {
          if (notice.type === 'ready' && !announced) {
            announced = true;
            log(`stream ${notice.stream_id} ${trackLabel}`);
          }
        },
      });
    } catch (error) {
      stopPlaying();
      throw error;
    }
    let closing = null;
    const close = (why) => {
      closing ??= (async () => {
        clearInterval(liveness);
        track.removeEventListener('ended', onEnded);
        await sender.close().catch(() => {});
        stopPlaying();
        log(`closed stream ${sender.streamId} (${why}, code ${sender.closeCode}) ${JSON.stringify(sender.stats)}`);
      })();
      return closing;
    };
    const onEnded = () => close('track ended');
    track.addEventListener('ended', onEnded);
    const liveness = setInterval(() => {
      if (track.readyState !== 'live') close('track ended');
    }, LIVENESS_MS);
    sender.done?.then(() => close(track.readyState === 'live' ? 'capture stopped' : 'track ended'));
    sender.closed.then(() => close('bridge closed'));
    window.addEventListener('pagehide', () => close('page hidden'), { once: true });
  }
})();
