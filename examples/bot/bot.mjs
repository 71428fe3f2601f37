#!/usr/bin/env node
// A recording bot's browser driver, as real bots drive Chromium: Playwright
// (playwright-core, which downloads no browser) starts the system's
// Chromium over --remote-debugging-pipe, opens a meeting or capture page,
// stays, and leaves.
//
//   node examples/bot/bot.mjs --url URL [--seconds 10] [--until-title done]
//       [--executable /usr/bin/chromium] [--profile DIR] [--extension DIR]
//       [--arg=--some-switch ...]
//
//   --url          the page to join (a meeting, or a bridge's capture page)
//   --seconds      how long to stay before leaving (default 10)
//   --until-title  leave earlier once the page's title is this (the capture
//                  page sets "done" once it has closed its senders cleanly,
//                  "error" if it failed: then the driver fails too)
//   --executable   the browser, or a wrapper (`shmring chromium-exec`) that
//                  execs it (default $CHROMIUM, else /usr/bin/chromium)
//   --profile      the browser's user-data-dir (default: a fresh one on
//                  /dev/shm, as the bridge's file lane wants: give the
//                  same directory to `shmring bridge --profile-dir`)
//   --extension    load this unpacked extension (the bridge's meeting
//                  extension, `shmring-bridge --extension-dir DIR`)
//   --arg=SWITCH   one more browser switch (repeatable)
//
// It prints the page's console lines as it goes, then one JSON line:
// {"left": true, "browser_pid": ..., "title": ..., "seconds": ...}.
// Exit status: 0 when the page stayed up and did not report an error.

import { chromium } from 'playwright-core';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    'until-title': { type: 'string' },
    executable: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    profile: { type: 'string' },
    extension: { type: 'string' },
    arg: { type: 'string', multiple: true, default: [] },
  },
});
if (!options.url) {
  console.error('usage: bot.mjs --url URL [--seconds S] [--until-title T] [--executable PATH] [--profile DIR] [--extension DIR]');
  process.exit(2);
}

// What a bot needs of the browser: the fake camera and microphone granted
// without a prompt (a real bot has none either; it receives the meeting),
// sound that plays without a gesture, and no throttling of a page that
// nobody looks at.
const args = [
  '--use-fake-device-for-media-stream=fps=30',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-gpu',
  ...options.arg,
];
// Playwright turns extensions off unless told otherwise.
const ignoreDefaultArgs = [];
if (options.extension) {
  args.push(`--disable-extensions-except=${options.extension}`, `--load-extension=${options.extension}`);
  ignoreDefaultArgs.push('--disable-extensions');
}

const ownProfile = !options.profile;
const profile = options.profile ?? mkdtempSync('/dev/shm/shmring-bot-');

// The browser is our child once every wrapper has exec'd it: Playwright's
// persistent context does not say which process it is.
function browserPid() {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) return Number(entry);
    } catch {
      // It exited meanwhile.
    }
  }
  return null;
}

const started = Date.now();
let failed = null;
const context = await chromium.launchPersistentContext(profile, {
  executablePath: options.executable,
  headless: true,
  args,
  ignoreDefaultArgs,
});
const pid = browserPid();
console.error(`bot: browser pid ${pid} (${options.executable}), profile ${profile}`);
let title = '';
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => console.log(`console: ${message.text()}`));
  page.on('pageerror', (error) => console.log(`pageerror: ${error.message}`));
  await page.goto(options.url);
  const until = Date.now() + Number(options.seconds) * 1000;
  while (Date.now() < until) {
    title = await page.title();
    if (title === 'error') {
      failed = 'the page reported an error';
      break;
    }
    if (options['until-title'] && title === options['until-title']) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // Leave the meeting as a person does: the page goes, its tracks and
  // sockets close.
  await page.close({ runBeforeUnload: true });
} catch (error) {
  failed = error.message;
} finally {
  await context.close();
  if (ownProfile) rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify({ left: true, browser_pid: pid, title, seconds: (Date.now() - started) / 1000, failed }));
if (failed) {
  console.error(`bot: ${failed}`);
  process.exit(1);
}
