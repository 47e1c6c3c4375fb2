// Real protocol peers for mailform's tests, on loopback only:
//
// - an OAuth 2.0 authorization server: `oidc-provider` over HTTPS, with
//   authorization code + PKCE (required), refresh tokens (also Google-style via
//   `access_type=offline`), revocation (RFC 7009), introspection (RFC 7662) and
//   the device flow (RFC 8628); its own login and consent pages with real
//   users and passwords; and admin routes that play "the user removed access"
//   (revoke all of a user's grants) and "the access token expired" (kill only
//   access tokens);
// - an SMTP submission server: `smtp-server` on a STARTTLS port and an
//   implicit-TLS port, AUTH XOAUTH2 only and never before TLS, checking each
//   bearer token by introspection at the OAuth server (active, that user, a
//   mail scope) and answering a bad token as Gmail does: 334 with a base64
//   JSON status, then 535 after the client's empty line. Accepted messages are
//   written to the mailbox folder (NAME.eml plus NAME.json with the envelope).
//
// Configuration comes from the environment (the Rust harness sets it):
//   PEERS_CERT, PEERS_KEY   server certificate and key (PEM) for 127.0.0.1/localhost/::1
//   PEERS_CA                the CA that signed it (the SMTP server trusts it for introspection)
//   PEERS_MAILBOX           folder for accepted messages
//   PEERS_LATENCY_MS        added to every client→server chunk (so to every round trip); default 0
//   PEERS_ACCESS_TTL        access token lifetime in seconds; default 3600
//   PEERS_SMTP_SCOPES       scopes of which a token needs one for SMTP; default "mail https://mail.google.com/"
//   PEERS_CLEANUP_DIR       a folder to remove on exit (the harness's temporary files)
// When ready it prints one JSON line describing URLs, ports, clients and users,
// and it exits when its standard input closes (so it dies with the harness).

import { randomBytes, generateKeyPairSync, createPublicKey, verify as verifySignature } from 'node:crypto';
import { appendFileSync, chmodSync, readFileSync, writeFileSync, renameSync, mkdirSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';

import Provider, { errors } from 'oidc-provider';
import { SMTPServer } from 'smtp-server';

// Stdout carries exactly one line, the ready line; library notices
// (oidc-provider prints some with console.log) go to stderr.
for (const level of ['log', 'info', 'warn', 'debug']) {
  console[level] = (...parts) => process.stderr.write(`${parts.join(' ')}\n`);
}

const HOST = '127.0.0.1';
const env = (name, fallback) => process.env[name] ?? fallback;
const required = (name) => {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`peers: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
};

const tls = { key: readFileSync(required('PEERS_KEY')), cert: readFileSync(required('PEERS_CERT')) };
const ca = readFileSync(required('PEERS_CA'));
const mailbox = required('PEERS_MAILBOX');
mkdirSync(mailbox, { recursive: true });
const latency = Number(env('PEERS_LATENCY_MS', '0'));
const accessTtl = Number(env('PEERS_ACCESS_TTL', '3600'));
const smtpScopes = env('PEERS_SMTP_SCOPES', 'mail https://mail.google.com/').split(' ').filter(Boolean);

const secret = () => randomBytes(24).toString('base64url');
const adminToken = secret();

// The people who can consent. Account ids are the email addresses, so the
// introspected `sub` is what an SMTP login names.
const USERS = new Map([
  ['alice@example.test', { password: 'alice-password' }],
  ['bob@example.test', { password: 'bob-password' }],
  ['carol@example.test', { password: 'carol-password' }],
  ['dave@example.test', { password: 'dave-password' }],
  ['erin@example.test', { password: 'erin-password' }],
  // One each for mailform's own tests that revoke or expire grants.
  ['frank@example.test', { password: 'frank-password' }],
  ['grace@example.test', { password: 'grace-password' }],
  ['heidi@example.test', { password: 'heidi-password' }],
  ['ivan@example.test', { password: 'ivan-password' }],
  ['judy@example.test', { password: 'judy-password' }],
  ['ken@example.test', { password: 'ken-password' }],
  ['leo@example.test', { password: 'leo-password' }],
  ['mia@example.test', { password: 'mia-password' }],
  ['nina@example.test', { password: 'nina-password' }],
  ['olga@example.test', { password: 'olga-password' }],
  ['pete@example.test', { password: 'pete-password' }],
  // Accounts of mailform's trust tests: a wrong account signs in, a delegate
  // consents for a shared mailbox.
  ['quinn@example.test', { password: 'quinn-password' }],
  ['rita@example.test', { password: 'rita-password' }],
  ['sam@example.test', { password: 'sam-password' }],
  ['tess@example.test', { password: 'tess-password' }],
  ['uma@example.test', { password: 'uma-password' }],
  ['vic@example.test', { password: 'vic-password' }],
  ['wendy@example.test', { password: 'wendy-password' }],
  ['xena@example.test', { password: 'xena-password' }],
  ['yuri@example.test', { password: 'yuri-password' }],
  ['zoe@example.test', { password: 'zoe-password' }],
  ['amy@example.test', { password: 'amy-password' }],
  // The first-week tests: drift that stays found.
  ['bea@example.test', { password: 'bea-password' }],
  ['cal@example.test', { password: 'cal-password' }],
  ['dan@example.test', { password: 'dan-password' }],
  // A login refused as another account's, planned as a re-consent.
  ['eli@example.test', { password: 'eli-password' }],
  ['fay@example.test', { password: 'fay-password' }],
  // The IMAP proofs (Dovecot serves their mailboxes).
  ['gus@example.test', { password: 'gus-password' }],
  ['hana@example.test', { password: 'hana-password' }],
  ['ivy@example.test', { password: 'ivy-password' }],
  ['jon@example.test', { password: 'jon-password' }],
  // Gmail forwarding as code.
  ['kim@example.test', { password: 'kim-password' }],
  ['lou@example.test', { password: 'lou-password' }],
]);

// Shared mailboxes no one signs in to, and the delegates who may send as them
// (Microsoft 365's FullAccess): a delegate's token logs in as the mailbox.
const DELEGATES = new Map([
  ['quinn@example.test', ['shared@example.test']],
]);
const maySendAs = (sub, mailbox) => sub === mailbox || (DELEGATES.get(sub) ?? []).includes(mailbox);

const SCOPES = ['openid', 'email', 'offline_access', 'mail', 'https://mail.google.com/'];
const GRANTS = ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'];
// Native clients: any loopback port is accepted for these paths (RFC 8252 §7.3).
// `http://localhost` is what Google's Desktop client file registers.
const REDIRECTS = ['http://127.0.0.1/callback', 'http://localhost/callback', 'http://[::1]/callback', 'http://localhost'];
const clients = {
  confidential: { client_id: 'mailform-confidential', client_secret: secret() },
  public: { client_id: 'mailform-public' },
  introspector: { client_id: 'smtp-server', client_secret: secret() },
  // Organisation grants (Microsoft 365 app-only): client credentials with a
  // secret, and with a certificate's key (RFC 7523 client assertion).
  app: { client_id: 'mailform-app', client_secret: secret() },
  app_cert: { client_id: 'mailform-app-cert' },
};

// ---- organisation grants ----------------------------------------------------

// Exchange's mailbox permissions: the mailboxes each app may send as (its
// token names no person). The rest are refused in Microsoft's words.
const appMailbox = (mailbox) => /^app-[\w-]+@example\.test$/.test(mailbox);
const APP_MAILBOXES = new Map([
  ['mailform-app', appMailbox],
  ['mailform-app-cert', appMailbox],
]);
// The key whose certificate the app_cert client registered (the harness
// makes the certificate around it; the server knows only the public key).
const appCertKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const assertionHeaders = new Map(); // client id → the last client assertion's header
clients.app_cert.private_key = appCertKey.privateKey.export({ type: 'pkcs8', format: 'pem' });

// Google Workspace service accounts with domain-wide delegation: each has
// a key (its downloaded JSON holds the private half), a client id, and the
// scopes the domain's admin allowed for it (revocable by an admin route).
// Mailboxes of the Workspace domain: the people, and the app-* boxes.
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const workspaceMailbox = (mailbox) => USERS.has(mailbox) || appMailbox(mailbox);
const serviceAccounts = ['main', 'revocable'].map((name, i) => {
  const key = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    name,
    client_id: `10485760000000000000${i + 1}`,
    client_email: `mailform-${name}@peers-test.iam.gserviceaccount.com`,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    publicKey: key.publicKey,
    // The main account may also change Gmail's forwarding settings.
    delegated: new Set(name === 'main'
      ? ['https://mail.google.com/', 'https://www.googleapis.com/auth/gmail.settings.sharing']
      : ['https://mail.google.com/']),
  };
});
const serviceAccountByEmail = new Map(serviceAccounts.map((sa) => [sa.client_email, sa]));
const serviceAccountById = new Map(serviceAccounts.map((sa) => [sa.client_id, sa]));

// ---- in-memory storage that admin routes can search ------------------------

const stores = new Map();
class MemoryAdapter {
  constructor(name) {
    this.name = name;
    if (!stores.has(name)) stores.set(name, new Map());
    this.store = stores.get(name);
  }

  async upsert(id, payload, expiresIn) {
    this.store.set(id, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined });
  }

  async find(id) {
    const entry = this.store.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt < Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUserCode(userCode) {
    for (const [id, { payload }] of this.store) if (payload.userCode === userCode) return this.find(id);
    return undefined;
  }

  async findByUid(uid) {
    for (const [id, { payload }] of this.store) if (payload.uid === uid) return this.find(id);
    return undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, { payload }] of this.store) if (payload.grantId === grantId) this.store.delete(id);
  }
}

function revokeGrantsOf(user) {
  const grants = stores.get('Grant') ?? new Map();
  const ids = [...grants].filter(([, { payload }]) => payload.accountId === user).map(([id]) => id);
  for (const store of stores.values()) {
    for (const [id, { payload }] of store) if (ids.includes(payload.grantId) || ids.includes(id)) store.delete(id);
  }
  return ids.length;
}

function expireAccessTokensOf(user) {
  const tokens = stores.get('AccessToken') ?? new Map();
  let n = 0;
  for (const [id, { payload }] of tokens) {
    if (payload.accountId === user) {
      tokens.delete(id);
      n += 1;
    }
  }
  return n;
}

// ---- listening: real servers on ephemeral ports, optionally behind a delay ---

// smtp-server wraps a net.Server in `.server`.
const listen = (server) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, HOST, () => resolve((server.server ?? server).address().port));
});

// Delays every chunk from the client by `latency` ms before passing it on, so
// each request/response round trip costs that much more. Order is kept.
async function front(targetPort) {
  if (latency <= 0) return targetPort;
  const proxy = net.createServer((client) => {
    const upstream = net.connect(targetPort, HOST);
    client.on('data', (chunk) => setTimeout(() => upstream.write(chunk), latency));
    upstream.on('data', (chunk) => client.write(chunk));
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('close', () => setTimeout(close, latency));
    upstream.on('close', close);
    client.on('error', close);
    upstream.on('error', close);
  });
  return listen(proxy);
}

// The OAuth server's port must be known before the provider exists (it is in
// the issuer), so the HTTPS server starts first and gets its handler after.
let handler = (req, res) => { res.statusCode = 503; res.end(); };
const oauthServer = https.createServer(tls, (req, res) => handler(req, res));
const oauthPort = await front(await listen(oauthServer));
const issuer = `https://${HOST}:${oauthPort}`;

// ---- the OAuth 2.0 authorization server -------------------------------------

const offlineGrants = new Set(); // grants consented with Google's access_type=offline
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients: [
    {
      ...clients.confidential,
      id_token_signed_response_alg: 'ES256',
      application_type: 'native',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: GRANTS,
      response_types: ['code'],
      redirect_uris: REDIRECTS,
    },
    {
      ...clients.public,
      id_token_signed_response_alg: 'ES256',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: GRANTS,
      response_types: ['code'],
      redirect_uris: REDIRECTS,
    },
    {
      ...clients.introspector,
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
    {
      ...clients.app,
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: clients.app_cert.client_id,
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'PS256',
      jwks: { keys: [{ ...appCertKey.publicKey.export({ format: 'jwk' }), use: 'sig' }] },
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    // Google's service-account requests carry no client authentication:
    // the client is named by the assertion's issuer (see `handler`).
    ...serviceAccounts.map((sa) => ({
      client_id: sa.client_id,
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'none',
      grant_types: [JWT_BEARER],
      response_types: [],
      redirect_uris: [],
    })),
  ],
  async findAccount(ctx, id) {
    if (!USERS.has(id)) return undefined;
    return { accountId: id, async claims() { return { sub: id, email: id }; } };
  },
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'ES256', kid: 'peers' }] },
  cookies: { keys: [secret()] },
  scopes: SCOPES,
  claims: { openid: ['sub'], email: ['email'] },
  // The ID token of a code or device grant names the account (`email`), as
  // Google's and Microsoft's do; the spec's default keeps it for userinfo.
  conformIdTokenClaims: false,
  extraParams: ['access_type'],
  // Entra names the certificate of a client assertion by its SHA-256
  // thumbprint: the header must carry one (the tests compare it with the
  // certificate they made), and it is kept for them to read.
  async assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client) {
    if (client.clientId === clients.app_cert.client_id) {
      if (typeof header['x5t#S256'] !== 'string' || !/^[\w-]{43}$/.test(header['x5t#S256'])) {
        throw new errors.InvalidClientAuth('the assertion names no certificate (x5t#S256)');
      }
      assertionHeaders.set(client.clientId, header);
    }
  },
  pkce: { required: () => true, methods: ['S256'] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async issueRefreshToken(ctx, client, code) {
    return client.grantTypeAllowed('refresh_token')
      && (code.scopes.has('offline_access') || offlineGrants.has(code.grantId));
  },
  ttl: {
    // Organisation grants' tokens live under the 5 minutes within which
    // mailform asks for a new one, so every use renews them.
    AccessToken: (ctx, token) => (token.gty === JWT_BEARER ? 240 : accessTtl),
    ClientCredentials: 240,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    Interaction: 3600,
    RefreshToken: 14 * 24 * 3600,
    Session: 3600,
  },
});
// RFC 7523 §2.1, as Google's token endpoint answers it: the assertion
// signed RS256 by the service account's key (its `kid`), issued by its
// address, for this token endpoint, at most an hour long and not from the
// future; `sub` a mailbox of the domain; every scope delegated.
const googleError = (Kind, description) => Object.assign(new Kind(description), { error_description: description });
provider.registerGrantType(JWT_BEARER, async (ctx, next) => {
  const { assertion } = ctx.oidc.params;
  const sa = serviceAccountById.get(ctx.oidc.client.clientId);
  const parts = String(assertion ?? '').split('.');
  if (!sa || parts.length !== 3) throw googleError(errors.InvalidGrant, 'Invalid JWT: not a JWT.');
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], 'base64url').toString());
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString());
  } catch {
    throw googleError(errors.InvalidGrant, 'Invalid JWT: not a JWT.');
  }
  const signed = verifySignature('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), sa.publicKey, Buffer.from(parts[2], 'base64url'));
  if (header.alg !== 'RS256' || header.kid !== sa.private_key_id || !signed) {
    throw googleError(errors.InvalidGrant, 'Invalid JWT Signature.');
  }
  const now = Math.floor(Date.now() / 1000);
  const short = typeof claims.iat === 'number' && typeof claims.exp === 'number'
    && claims.iat <= now + 60 && claims.exp > now && claims.exp - claims.iat <= 3600;
  if (!short) {
    throw googleError(errors.InvalidGrant, 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
  }
  if (claims.iss !== sa.client_email || claims.aud !== `${issuer}/token`) {
    throw googleError(errors.InvalidGrant, 'Invalid JWT: iss or aud is not this service account or this token endpoint.');
  }
  if (typeof claims.sub !== 'string' || !workspaceMailbox(claims.sub)) {
    throw googleError(errors.InvalidGrant, 'Invalid email or User ID');
  }
  const scopes = String(claims.scope ?? '').split(' ').filter(Boolean);
  if (!scopes.length || !scopes.every((s) => sa.delegated.has(s))) {
    throw googleError(errors.UnauthorizedClient, 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.');
  }
  const token = new ctx.oidc.provider.AccessToken({ client: ctx.oidc.client, accountId: claims.sub, scope: scopes.join(' '), gty: JWT_BEARER });
  ctx.oidc.entity('AccessToken', token);
  const value = await token.save();
  ctx.body = { access_token: value, expires_in: token.expiration, token_type: 'Bearer' };
  await next();
}, ['assertion']);

// Quiet: errors are answered to the client; the harness reads stderr only on failure.
provider.on('server_error', (ctx, err) => process.stderr.write(`peers: oauth server_error: ${err.stack}\n`));

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (res, status, title, body) => {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
};
const readRaw = async (req) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
};
const readBody = async (req) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
};
const abortForm = (uid) => `<form method="post" action="/interaction/${uid}/abort"><button type="submit">Deny</button></form>`;

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, 'Wrong interaction', '');
  const { prompt, params, session } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      return page(res, 200, 'Sign in', `<p>${escape(params.client_id)} asks you to sign in.</p>
<form method="post" action="/interaction/${uid}/login">
<input type="email" name="login" placeholder="email"/><input type="password" name="password"/>
<button type="submit">Sign in</button></form>${abortForm(uid)}`);
    }
    const scopes = [...new Set([...(prompt.details.missingOIDCScope ?? [])])];
    const boxes = scopes.map((s) => `<label><input type="checkbox" name="scope" value="${escape(s)}" checked/> ${escape(s)}</label>`).join('');
    return page(res, 200, 'Allow access', `<p>${escape(params.client_id)} asks for access to ${escape(session.accountId)}.</p>
<form method="post" action="/interaction/${uid}/confirm">${boxes}<button type="submit">Allow</button></form>${abortForm(uid)}`);
  }
  const form = await readBody(req);
  if (action === 'login') {
    const login = form.get('login') ?? '';
    const user = USERS.get(login);
    if (prompt.name !== 'login' || !user || user.password !== form.get('password')) {
      return page(res, 200, 'Sign in', `<p class="error">Wrong email or password.</p>
<form method="post" action="/interaction/${uid}/login">
<input type="email" name="login"/><input type="password" name="password"/><button type="submit">Sign in</button></form>${abortForm(uid)}`);
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    if (prompt.name !== 'consent') return page(res, 400, 'Nothing to confirm', '');
    const asked = prompt.details.missingOIDCScope ?? [];
    const chosen = new Set(form.getAll('scope'));
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const granted = asked.filter((s) => chosen.has(s));
    const rejected = asked.filter((s) => !chosen.has(s));
    if (granted.length) grant.addOIDCScope(granted.join(' '));
    if (rejected.length) grant.rejectOIDCScope(rejected.join(' '));
    const grantId = await grant.save();
    if (params.access_type === 'offline') offlineGrants.add(grantId);
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return provider.interactionFinished(
    req,
    res,
    { error: 'access_denied', error_description: 'The user denied access' },
    { mergeWithLastSubmission: false },
  );
}

async function admin(req, res, what) {
  const json = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST' || req.headers.authorization !== `Bearer ${adminToken}`) return json(403, { error: 'forbidden' });
  const form = await readBody(req);
  if (what === 'gmail-settings') {
    const user = form.get('user') ?? '';
    if (!USERS.has(user)) return json(404, { error: `no user ${user}` });
    const settings = gmailOf(user);
    if (form.has('enabled')) settings.enabled = form.get('enabled') === 'true';
    if (form.has('email')) settings.emailAddress = form.get('email') || undefined;
    if (form.has('disposition')) settings.disposition = form.get('disposition') || undefined;
    if (form.has('address')) settings.addresses.set(form.get('address'), form.get('status') ?? 'pending');
    if (form.has('api')) settings.apiDisabled = form.get('api') === 'disabled';
    return json(200, { user, enabled: settings.enabled });
  }
  if (what === 'assertion-header') {
    return json(200, assertionHeaders.get(form.get('client') ?? '') ?? {});
  }
  if (what === 'revoke-delegation') {
    const sa = serviceAccountById.get(form.get('client') ?? '');
    if (!sa) return json(404, { error: 'no such service account' });
    sa.delegated.clear();
    return json(200, { client: sa.client_id, delegated: [] });
  }
  const user = form.get('user') ?? '';
  if (!USERS.has(user)) return json(404, { error: `no user ${user}` });
  if (what === 'revoke-grants') return json(200, { user, grants_revoked: revokeGrantsOf(user) });
  if (what === 'expire-access-tokens') return json(200, { user, access_tokens_removed: expireAccessTokensOf(user) });
  return json(404, { error: `no admin route ${what}` });
}

// A device authorization endpoint that lies about the polling interval: the
// real one's answer with `interval` replaced by the query's (0, or a day and
// more), so tests see a client bound its wait and its polling whatever a
// provider says. Everything else (codes, token endpoint) is the real server's.
async function hostileDevice(req, res, interval) {
  const body = await new Promise((resolve) => {
    let text = '';
    req.on('data', (c) => { text += c; });
    req.on('end', () => resolve(text));
  });
  const answer = await new Promise((resolve, reject) => {
    const headers = { 'content-type': req.headers['content-type'] ?? 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) };
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    const inner = https.request(`${issuer}/device/auth`, { method: 'POST', ca, headers }, (r) => {
      let text = '';
      r.on('data', (c) => { text += c; });
      r.on('end', () => resolve({ status: r.statusCode, text }));
    });
    inner.on('error', reject);
    inner.end(body);
  });
  let out = answer.text;
  try {
    const json = JSON.parse(answer.text);
    if (json.device_code) json.interval = interval;
    out = JSON.stringify(json);
  } catch { /* passed on as it came */ }
  res.writeHead(answer.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(out);
}

// ---- Gmail's settings API (an emulation of a documented contract) ----------
//
// No public emulator exists, so this serves the two documented endpoints
// mailform reads, with the shapes of the Gmail API reference
// (users.settings.getAutoForwarding: { enabled, emailAddress, disposition };
// users.settings.forwardingAddresses.list: { forwardingAddresses:
// [{ forwardingEmail, verificationStatus }] }) and Google's error body
// ({ error: { code, message, status } }). Each request's bearer token is
// introspected here (active, a mail scope): `sub` is "me". Admin routes set
// a user's settings, as a person would in Gmail's settings page.
const gmailSettings = new Map(); // user → { enabled, emailAddress, disposition, addresses: Map, apiDisabled }
const gmailOf = (user) => {
  if (!gmailSettings.has(user)) {
    gmailSettings.set(user, { enabled: false, emailAddress: undefined, disposition: undefined, addresses: new Map(), apiDisabled: false });
  }
  return gmailSettings.get(user);
};
async function gmailApi(req, res, what) {
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  };
  const googleError = (code, message, status, reason) => answer(code, {
    error: { code, message, status, errors: [{ message, domain: 'global', reason }] },
  });
  const bearer = (req.headers.authorization ?? '').match(/^Bearer (\S+)$/);
  const info = bearer ? await introspect(bearer[1]) : { active: false };
  const scopes = (info.scope ?? '').split(' ');
  if (!info.active || !info.sub || !smtpScopes.some((s) => scopes.includes(s))) {
    return googleError(401, 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.', 'UNAUTHENTICATED', 'authError');
  }
  const settings = gmailOf(info.sub);
  if (settings.apiDisabled) {
    return googleError(403, 'Gmail API has not been used in project 104857600000 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=104857600000 then retry.', 'PERMISSION_DENIED', 'accessNotConfigured');
  }
  const sharing = scopes.includes('https://www.googleapis.com/auth/gmail.settings.sharing');
  // Writes (users.settings.forwardingAddresses.create, updateAutoForwarding)
  // need the settings scope, which only a service account with domain-wide
  // delegation can hold. An address in the mailbox's own domain is accepted
  // at once; another waits for its owner to confirm (pending).
  if (req.method !== 'GET') {
    if (!sharing) {
      return googleError(403, 'Request had insufficient authentication scopes.', 'PERMISSION_DENIED', 'insufficientPermissions');
    }
    const body = JSON.parse((await readRaw(req)) || '{}');
    if (what === 'forwardingAddresses' && req.method === 'POST') {
      const email = String(body.forwardingEmail ?? '');
      const status = email.split('@')[1] === info.sub.split('@')[1] ? 'accepted' : 'pending';
      if (settings.addresses.has(email)) {
        return googleError(409, 'Requested entity already exists', 'ALREADY_EXISTS', 'duplicate');
      }
      settings.addresses.set(email, status);
      return answer(200, { forwardingEmail: email, verificationStatus: status });
    }
    if (what === 'autoForwarding' && req.method === 'PUT') {
      if (body.enabled && settings.addresses.get(body.emailAddress) !== 'accepted') {
        return googleError(400, 'Unverified forwarding address', 'FAILED_PRECONDITION', 'failedPrecondition');
      }
      settings.enabled = Boolean(body.enabled);
      settings.emailAddress = body.emailAddress;
      settings.disposition = body.disposition;
      return answer(200, { enabled: settings.enabled, emailAddress: settings.emailAddress, disposition: settings.disposition });
    }
    return googleError(405, 'Method not allowed', 'INVALID_ARGUMENT', 'badRequest');
  }
  if (what === 'autoForwarding') {
    const body = { enabled: settings.enabled };
    if (settings.emailAddress) body.emailAddress = settings.emailAddress;
    if (settings.disposition) body.disposition = settings.disposition;
    return answer(200, body);
  }
  const list = [...settings.addresses].map(([forwardingEmail, verificationStatus]) => ({ forwardingEmail, verificationStatus }));
  return answer(200, list.length ? { forwardingAddresses: list } : {});
}

const callback = provider.callback();
handler = async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/__hostile/device' && req.method === 'POST') {
      return await hostileDevice(req, res, Number(url.searchParams.get('interval') ?? '5'));
    }
    let m = url.pathname.match(/^\/interaction\/([\w-]+)(?:\/(login|confirm|abort))?$/);
    if (m) return await interaction(req, res, m[1], m[2]);
    m = url.pathname.match(/^\/__admin\/([\w-]+)$/);
    if (m) return await admin(req, res, m[1]);
    m = url.pathname.match(/^\/gmail\/v1\/users\/me\/settings\/(autoForwarding|forwardingAddresses)$/);
    if (m) return await gmailApi(req, res, m[1]);
    if (url.pathname === '/token' && req.method === 'POST') {
      // A service account's request authenticates no client (Google's
      // endpoint knows it by the assertion): name the client the
      // assertion's issuer is, for oidc-provider, which insists on one.
      const form = await readBody(req);
      // Google's endpoint takes exactly the grant type and the assertion.
      if (form.get('grant_type') === JWT_BEARER
        && ([...form.keys()].some((k) => k !== 'grant_type' && k !== 'assertion') || req.headers.authorization)) {
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: 'invalid_request', error_description: 'a JWT-bearer request carries only grant_type and assertion' }));
      }
      if (form.get('grant_type') === JWT_BEARER && !form.has('client_id') && !req.headers.authorization) {
        try {
          const claims = JSON.parse(Buffer.from((form.get('assertion') ?? '').split('.')[1] ?? '', 'base64url').toString());
          const sa = serviceAccountByEmail.get(claims.iss);
          if (sa) form.set('client_id', sa.client_id);
        } catch { /* the grant handler refuses it */ }
      }
      req.body = form.toString();
    }
    return callback(req, res);
  } catch (err) {
    process.stderr.write(`peers: ${err.stack}\n`);
    if (!res.headersSent) page(res, 500, 'Error', `<pre>${escape(err.message)}</pre>`);
    else res.end();
  }
};

// ---- the SMTP submission server ---------------------------------------------

async function introspect(token) {
  const body = new URLSearchParams({ token, token_type_hint: 'access_token' }).toString();
  const auth = Buffer.from(`${clients.introspector.client_id}:${clients.introspector.client_secret}`).toString('base64');
  return new Promise((resolve, reject) => {
    const req = https.request(`${issuer}/token/introspection`, {
      method: 'POST',
      ca,
      headers: {
        authorization: `Basic ${auth}`,
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body),
      },
    }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        try { resolve(JSON.parse(text)); } catch (e) { reject(new Error(`introspection answered ${res.statusCode}: ${text}`)); }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

let delivered = 0;
const captureLog = path.join(mailbox, 'captured-auth.log');
const flakyAuths = new Map();
// `persona` is how refusals are worded:
// - 'gmail': a bad token gets `334 <base64 JSON>`, then, after the client's
//   empty line, `535 5.7.8 ...` (enhanced status codes on, as Gmail sends them);
// - 'microsoft': Microsoft 365 with SMTP AUTH disabled for the tenant: a
//   valid token is refused with `535 5.7.139 ... SmtpClientAuthentication is
//   disabled ...`, a bad one with `535 5.7.3 Authentication unsuccessful`, at
//   once and without a challenge (its replies carry their own codes).
// `extra` makes the odd servers: one that offers no STARTTLS, one that
// offers only PLAIN and LOGIN, one that never greets.
const smtpOptions = (secure, persona = 'gmail', extra = {}) => ({
  ...tls,
  secure,
  name: persona === 'microsoft' ? 'smtp.office365.peers.test' : 'smtp.peers.test',
  banner: 'mailform test peer',
  authMethods: ['XOAUTH2'],
  allowInsecureAuth: false,
  hideENHANCEDSTATUSCODES: persona === 'microsoft',
  logger: false,
  // Clients are on loopback; a reverse lookup would only ask the network.
  disableReverseLookup: true,
  size: 10 * 1024 * 1024,
  ...extra,
  async onAuth(auth, session, done) {
    const microsoft = (text) => done(Object.assign(new Error(text), { responseCode: 535 }));
    const refuse = () => (persona === 'microsoft'
      ? microsoft('5.7.3 Authentication unsuccessful [PEERS01CA0001.peers.prod.outlook.test]')
      : done(null, { data: { status: '401', schemes: 'bearer', scope: smtpScopes.join(' ') } }));
    if (auth.method !== 'XOAUTH2') return done(new Error('only XOAUTH2 is offered'));
    // A server that hangs at AUTH (and so at everything after it).
    if (persona === 'stall') return undefined;
    // A hostile server: a 334 challenge line of 16 MB, over TLS.
    if (persona === 'flood') {
      return done(null, { data: { status: '401', schemes: 'bearer', filler: 'x'.repeat(16 * 1024 * 1024) } });
    }
    // A server whose token check fails now and then: every other AUTH of a
    // user is answered 454 4.7.0, as Gmail does when it cannot check a token.
    if (persona === 'flaky') {
      const n = (flakyAuths.get(auth.username) ?? 0) + 1;
      flakyAuths.set(auth.username, n);
      if (n % 2 === 1) {
        return done(Object.assign(new Error('4.7.0 Temporary authentication failure'), { responseCode: 454 }));
      }
    }
    if (persona === 'capture') {
      appendFileSync(captureLog, `${JSON.stringify({ user: auth.username, token: Boolean(auth.accessToken) })}\n`);
      return refuse();
    }
    try {
      const info = await introspect(auth.accessToken);
      const scopes = (info.scope ?? '').split(' ');
      // An app's token (client credentials: no person) logs in only as a
      // mailbox granted to that app, as Exchange's FullAccess permission.
      if (info.active && !info.sub && APP_MAILBOXES.has(info.client_id)) {
        if (APP_MAILBOXES.get(info.client_id)(auth.username) && smtpScopes.some((s) => scopes.includes(s))) {
          return done(null, { user: auth.username });
        }
        return microsoft('5.7.3 Authentication unsuccessful [PEERS01CA0001.peers.prod.outlook.test]');
      }
      if (info.active && maySendAs(info.sub, auth.username) && smtpScopes.some((s) => scopes.includes(s))) {
        if (persona === 'microsoft') {
          return microsoft('5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [PEERS01CA0001.peers.prod.outlook.test]');
        }
        return done(null, { user: auth.username });
      }
      return refuse();
    } catch (err) {
      process.stderr.write(`peers: ${err.message}\n`);
      return done(Object.assign(new Error('4.7.0 Temporary authentication failure'), { responseCode: 454 }));
    }
  },
  onData(stream, session, done) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      delivered += 1;
      const name = `${Date.now()}-${process.pid}-${delivered}`;
      const envelope = {
        user: session.user,
        from: session.envelope.mailFrom && session.envelope.mailFrom.address,
        to: session.envelope.rcptTo.map((r) => r.address),
        secure: session.secure,
      };
      // Write, then rename, so a reader never sees half a message.
      for (const [ext, data] of [['eml', Buffer.concat(chunks)], ['json', JSON.stringify(envelope)]]) {
        const file = path.join(mailbox, `${name}.${ext}`);
        writeFileSync(`${file}.tmp`, data);
        renameSync(`${file}.tmp`, file);
      }
      // And delivered: each recipient's Maildir under maildir/, which the
      // IMAP server of the tests serves (it may run as another user, so
      // the folders are open to it).
      for (const rcpt of envelope.to) {
        const box = path.join(mailbox, 'maildir', rcpt.toLowerCase());
        for (const sub of ['', 'new', 'cur', 'tmp']) {
          const dir = path.join(box, sub);
          mkdirSync(dir, { recursive: true });
          chmodSync(dir, 0o777);
        }
        const tmp = path.join(box, 'tmp', `${name}.peers`);
        writeFileSync(tmp, Buffer.concat(chunks), { mode: 0o644 });
        renameSync(tmp, path.join(box, 'new', `${name}.peers`));
      }
      done(null, `Ok: queued as ${name}`);
    });
  },
});

// A client that hangs up mid-handshake (an untrusted CA, the wrong port) is
// that connection's problem, as on a real server: logged, never fatal.
const smtpServer = (options) => {
  const server = new SMTPServer(options);
  server.on('error', (err) => process.stderr.write(`peers: smtp: ${err.code ?? ''} ${err.message}\n`));
  return server;
};
const starttlsPort = await front(await listen(smtpServer(smtpOptions(false))));
const tlsPort = await front(await listen(smtpServer(smtpOptions(true))));
const microsoftPort = await front(await listen(smtpServer(smtpOptions(false, 'microsoft'))));
const noStarttlsPort = await front(await listen(smtpServer(smtpOptions(false, 'gmail', { hideSTARTTLS: true }))));
const plainAuthPort = await front(await listen(smtpServer(smtpOptions(true, 'gmail', { authMethods: ['PLAIN', 'LOGIN'] }))));
const stallPort = await front(await listen(smtpServer(smtpOptions(false, 'stall'))));
// One that accepts the connection and never greets (its onConnect never answers).
const mutePort = await front(await listen(smtpServer(smtpOptions(false, 'gmail', { onConnect() {} }))));
// A server nobody applied (a pull request's edit points at it): a real
// STARTTLS server on the test CA that writes down every AUTH it is sent
// (user, and whether a token came) in PEERS_MAILBOX/captured-auth.log, and
// refuses it. Tests read the file to see that no token reached it.
const capturePort = await front(await listen(smtpServer(smtpOptions(false, 'capture'))));
// Hostile servers that never end a line: a 16 MB greeting before any TLS,
// and (persona 'flood') a 16 MB answer to AUTH after STARTTLS.
const floodGreetingPort = await front(await listen(smtpServer(smtpOptions(false, 'gmail', { banner: 'x'.repeat(16 * 1024 * 1024) }))));
const floodAuthPort = await front(await listen(smtpServer(smtpOptions(false, 'flood'))));
const flakyPort = await front(await listen(smtpServer(smtpOptions(false, 'flaky'))));

// The harness holds our stdin open; when it exits (however it dies), stdin
// closes and so do we, removing the folder it made for us.
const cleanup = process.env.PEERS_CLEANUP_DIR;
// Its stderr file (beside the folder) is kept only when something went wrong.
process.on('exit', (code) => {
  if (!cleanup) return;
  rmSync(cleanup, { recursive: true, force: true });
  if (code === 0) rmSync(`${cleanup}.stderr`, { force: true });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({
  ready: true,
  pid: process.pid,
  issuer,
  endpoints: {
    authorization: `${issuer}/auth`,
    token: `${issuer}/token`,
    revocation: `${issuer}/token/revocation`,
    introspection: `${issuer}/token/introspection`,
    device_authorization: `${issuer}/device/auth`,
  },
  admin: { token: adminToken, revoke_grants: `${issuer}/__admin/revoke-grants`, expire_access_tokens: `${issuer}/__admin/expire-access-tokens`, revoke_delegation: `${issuer}/__admin/revoke-delegation`, assertion_header: `${issuer}/__admin/assertion-header`, gmail_settings: `${issuer}/__admin/gmail-settings` },
  // Each service account's key file, as the Cloud console downloads it.
  service_accounts: Object.fromEntries(serviceAccounts.map((sa) => [sa.name, {
    type: 'service_account',
    project_id: 'peers-test',
    private_key_id: sa.private_key_id,
    private_key: sa.private_key,
    client_email: sa.client_email,
    client_id: sa.client_id,
    auth_uri: `${issuer}/auth`,
    token_uri: `${issuer}/token`,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(sa.client_email)}`,
    universe_domain: 'googleapis.com',
  }])),
  smtp: { host: HOST, starttls_port: starttlsPort, tls_port: tlsPort, microsoft_port: microsoftPort, no_starttls_port: noStarttlsPort, plain_auth_port: plainAuthPort, stall_port: stallPort, mute_port: mutePort, capture_port: capturePort, capture_log: captureLog, flood_greeting_port: floodGreetingPort, flood_auth_port: floodAuthPort, flaky_port: flakyPort, scopes: smtpScopes },
  clients,
  users: Object.fromEntries([...USERS].map(([email, { password }]) => [email, password])),
  mailbox,
  latency_ms: latency,
})}\n`);
