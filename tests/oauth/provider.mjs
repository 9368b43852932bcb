// The OAuth 2.0 / OpenID Connect authorization server of the tests: the npm
// package oidc-provider, in memory, on loopback.
//
//   node provider.mjs '{"accessTokenTTL":5,"rotateRefreshToken":"never"}'
//
// Settings come from one JSON argument (every key is optional, see `cfg`).
// Once it listens it prints one line, `READY {"issuer":…,"port":…,…}`, so the
// caller learns the ports it picked; everything else goes to stderr.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const arg = JSON.parse(process.argv[2] || '{}');
const cfg = {
  host: '127.0.0.1',
  port: 0, // 0: any free port
  accessTokenTTL: 10, // seconds, tokens of a user (code and refresh grants)
  clientCredentialsTTL: 10, // seconds
  refreshTokenTTL: 24 * 3600,
  // "always" | "never" | "default" (the library renews a refresh token only
  // after 70 % of its life, so in a short test it never does)
  rotateRefreshToken: 'default',
  // PEM files: mod_auth_openidc only introspects over https
  tlsCert: undefined,
  tlsKey: undefined,
  tlsPort: 0,
  testHooks: true,
  ...arg,
};

const server = http.createServer();
await new Promise((resolve) => server.listen(cfg.port, cfg.host, resolve));
const port = server.address().port;
const issuer = `http://${cfg.host}:${port}`;

const rotate = { always: () => true, never: () => false }[cfg.rotateRefreshToken];

const provider = new Provider(issuer, {
  clients: [
    {
      // the agent
      client_id: 'sync-agent',
      client_secret: 'sync-agent-secret',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      // nothing listens there: the test reads the code off the redirect
      redirect_uris: ['http://127.0.0.1:9/callback'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // Apache's identity when it introspects tokens; it gets none itself
      client_id: 'resource-server',
      client_secret: 'resource-server-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['openid', 'offline_access', 'records'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // devInteractions takes any login: every name is an account
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  ttl: {
    AccessToken: cfg.accessTokenTTL,
    ClientCredentials: cfg.clientCredentialsTTL,
    RefreshToken: cfg.refreshTokenTTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 365 * 24 * 3600,
  },
  ...(rotate ? { rotateRefreshToken: rotate } : {}),
  // the default (15 s) lets userinfo, so Kinto, accept an expired token
  clockTolerance: 0,
  cookies: { keys: ['tandem-test-cookie-key'] },
  pkce: { required: () => false },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// Test hooks, not OAuth. Revoking an access token (RFC 7009) kills its whole
// grant, refresh token included, so "drop just this access token" needs its
// own door; the counters let a test assert how many renewals happened.
const stats = { token_requests: {}, errors: {} };
provider.on('grant.success', (ctx) => {
  const grant = ctx.oidc.params.grant_type;
  stats.token_requests[grant] = (stats.token_requests[grant] ?? 0) + 1;
});
provider.on('grant.error', (ctx, err) => {
  const key = `${ctx.oidc.params?.grant_type}:${err.error ?? err.message}`;
  stats.errors[key] = (stats.errors[key] ?? 0) + 1;
});

// Every access token handed out, so that a test can take them all back
// (the agent's own included, which the test never sees).
const issued = [];
provider.on('access_token.saved', (token) => issued.push(token.jti));
provider.on('client_credentials.saved', (token) => issued.push(token.jti));

const callback = provider.callback();
async function handle(req, res) {
  if (!cfg.testHooks || !req.url.startsWith('/__test__/')) return callback(req, res);
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && req.url === '/__test__/stats') return reply(200, stats);
  if (req.method === 'POST' && req.url === '/__test__/destroy-token') {
    let body = '';
    for await (const chunk of req) body += chunk;
    const token = new URLSearchParams(body).get('token');
    const found = (await provider.AccessToken.find(token))
      ?? (await provider.ClientCredentials.find(token));
    if (found) await found.destroy();
    return reply(200, { destroyed: Boolean(found), kind: found?.kind ?? null });
  }
  if (req.method === 'POST' && req.url === '/__test__/destroy-issued') {
    let destroyed = 0;
    for (const jti of issued.splice(0)) {
      const found = (await provider.AccessToken.find(jti))
        ?? (await provider.ClientCredentials.find(jti));
      if (found) {
        await found.destroy();
        destroyed += 1;
      }
    }
    return reply(200, { destroyed });
  }
  return reply(404, { error: 'no such test hook' });
}
server.on('request', handle);

const ready = { issuer, port };
let tls;
if (cfg.tlsCert && cfg.tlsKey) {
  tls = https.createServer(
    { cert: fs.readFileSync(cfg.tlsCert), key: fs.readFileSync(cfg.tlsKey) },
    handle,
  );
  await new Promise((resolve) => tls.listen(cfg.tlsPort, cfg.host, resolve));
  ready.tls_port = tls.address().port;
  ready.tls_base = `https://${cfg.host}:${ready.tls_port}`;
}
process.stdout.write(`READY ${JSON.stringify(ready)}\n`);

const stop = () => {
  tls?.close();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  tls?.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
