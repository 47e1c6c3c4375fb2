// A headless person at the consent screen of the test OAuth server.
//
//   node consent-driver.mjs [options] URL
//
// Opens URL (an authorization URL, or a device flow's verification_uri_complete),
// signs in, approves or denies, and follows redirects. When the server sends
// the browser to the client's redirect URI, the driver requests it (as a
// browser would, so a loopback listener receives the code) and prints it on
// stdout. Usable as $BROWSER via the `consent-browser` wrapper.
//
// Options (each also read from the environment, for $BROWSER use):
//   --user EMAIL       CONSENT_USER       who signs in (default: the login_hint, else alice@example.test)
//   --password PW      CONSENT_PASSWORD   their password (default: <local part>-password)
//   --deny             CONSENT_ACTION=deny   press Deny at the consent screen
//                      CONSENT_DENY_USERS="a b"  only these users press Deny
//   --scopes "a b"     CONSENT_SCOPES     approve only these of the asked scopes
//   --no-callback      CONSENT_NO_CALLBACK=1  print the redirect URL, do not request it
//                      CONSENT_SWAP="a=b c=d"  the link meant for a (its login_hint) is opened by b
//                      CONSENT_SILENT_USERS="a b"  only these users never come back (they approve, then close the tab)
//                                          (what a person does for `--consent manual`)
//   --ca FILE          CONSENT_CA or PEERS_CA   the test CA (PEM)
// Exit 0 when the flow reached the redirect URI or the device flow's success
// page; 1 with the page's words on stderr otherwise.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  args.splice(i, 1);
  return true;
};
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const [, value] = args.splice(i, 2);
  return value;
};

const userOption = option('--user');
const passwordOption = option('--password');
const denyFlag = flag('--deny');
const scopesArg = option('--scopes') ?? process.env.CONSENT_SCOPES;
const only = scopesArg ? new Set(scopesArg.split(/[ ,]+/).filter(Boolean)) : undefined;
const noCallbackFlag = flag('--no-callback') ?? process.env.CONSENT_NO_CALLBACK === '1';
const caFile = option('--ca') ?? process.env.CONSENT_CA ?? process.env.PEERS_CA;
const start = args[0];
// Without a forced user, the person signs in to the account the request
// suggests (login_hint), as someone opening their own link would.
let hint;
try { hint = new URL(start).searchParams.get('login_hint') ?? undefined; } catch { hint = undefined; }
// CONSENT_SWAP="a=b": whoever opens a's link is b (owners who swapped links).
const swaps = new Map((process.env.CONSENT_SWAP ?? '').split(/[ ,]+/).filter(Boolean).map((p) => p.split('=')));
const user = userOption ?? process.env.CONSENT_USER ?? swaps.get(hint) ?? hint ?? 'alice@example.test';
const password = passwordOption ?? process.env.CONSENT_PASSWORD ?? `${user.split('@')[0]}-password`;
// CONSENT_DENY_USERS="a@x b@x": those people press Deny, the others approve.
const denyUsers = (process.env.CONSENT_DENY_USERS ?? '').split(/[ ,]+/).filter(Boolean);
const deny = denyFlag || process.env.CONSENT_ACTION === 'deny' || denyUsers.includes(user);
const silentUsers = (process.env.CONSENT_SILENT_USERS ?? '').split(/[ ,]+/).filter(Boolean);
const noCallback = noCallbackFlag || silentUsers.includes(user);

const fail = (why) => {
  process.stderr.write(`consent-driver: ${why}\n`);
  process.exit(1);
};
if (!start) fail('usage: consent-driver.mjs [--user EMAIL] [--deny] [--scopes "a b"] [--no-callback] URL');
const ca = caFile ? readFileSync(caFile) : undefined;
const origin = new URL(start).origin;

const jar = new Map();
function request(url, method = 'GET', form = undefined) {
  const target = new URL(url);
  const body = form ? form.toString() : undefined;
  const headers = { accept: 'text/html' };
  if (target.origin === origin && jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  if (body !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    headers['content-length'] = Buffer.byteLength(body);
  }
  const lib = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(target, { method, headers, ca }, (res) => {
      if (target.origin === origin) {
        for (const cookie of res.headers['set-cookie'] ?? []) {
          const [pair] = cookie.split(';');
          const eq = pair.indexOf('=');
          jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
        }
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const decode = (s) => s.replace(/&#(\d+);/g, (_, n) => String.fromCharCode(Number(n)))
  .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const attrs = (tag) => Object.fromEntries([...tag.matchAll(/([\w-]+)(?:="([^"]*)")?/g)].map(([, k, v]) => [k, v === undefined ? true : decode(v)]));

function forms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)].map(([, open, inner]) => {
    const { action = '', method = 'get' } = attrs(open);
    const inputs = [...inner.matchAll(/<input\b([^>]*)\/?>/g)].map(([, tag]) => attrs(tag));
    return { action, method: method.toLowerCase(), inputs };
  });
}

const text = (html) => decode(html.replace(/<style[\s\S]*?<\/style>/g, '').replace(/<[^>]+>/g, ' ')).replace(/\s+/g, ' ').trim();

let url = start;
let method = 'GET';
let form;
let signedIn = false;
for (let step = 0; step < 40; step += 1) {
  const res = await request(url, method, form).catch((e) => fail(`${url}: ${e.message}`));
  if (res.status >= 300 && res.status < 400 && res.location) {
    const next = new URL(res.location, url);
    if (next.origin !== origin) {
      // The provider hands the browser back to the client: the flow is over.
      process.stdout.write(`${next.href}\n`);
      if (!noCallback) {
        const reached = await request(next.href).catch((e) => fail(`redirect URI ${next.href} unreachable: ${e.message}`));
        if (reached.status >= 400) fail(`redirect URI answered ${reached.status}: ${text(reached.text)}`);
      }
      process.exit(0);
    }
    [url, method, form] = [next.href, 'GET', undefined];
    continue;
  }
  if (res.status !== 200) fail(`${url} answered ${res.status}: ${text(res.text)}`);

  const found = forms(res.text);
  const pick = (suffix) => found.find((f) => f.action.endsWith(suffix));
  let chosen;
  let values = new URLSearchParams();
  const hidden = (f) => f.inputs.filter((i) => i.type === 'hidden' && i.name).forEach((i) => values.append(i.name, i.value ?? ''));
  if ((chosen = pick('/login'))) {
    if (signedIn) fail(`sign-in refused for ${user}: ${text(res.text)}`);
    signedIn = true;
    hidden(chosen);
    values.set('login', user);
    values.set('password', password);
  } else if ((chosen = deny ? pick('/abort') : pick('/confirm'))) {
    hidden(chosen);
    for (const box of chosen.inputs.filter((i) => i.type === 'checkbox' && i.name)) {
      if (only ? only.has(box.value) : box.checked) values.append(box.name, box.value);
    }
  } else if ((chosen = found.find((f) => f.inputs.some((i) => i.name === 'user_code')))) {
    // The device flow's "is this your code?" page.
    hidden(chosen);
  } else if (found.length === 0 && !/oops|error/i.test(text(res.text))) {
    process.stdout.write(`${text(res.text)}\n`);
    process.exit(0);
  } else {
    fail(`no way forward at ${url}: ${text(res.text)}`);
  }
  [url, method, form] = [new URL(chosen.action, url).href, chosen.method.toUpperCase(), values];
  values = undefined;
}
fail('gave up after 40 steps');
