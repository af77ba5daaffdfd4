// A third-party authorization server for the guard's tests: panva's
// oidc-provider (a certified OpenID provider) with client credentials, JWT
// access tokens through resource indicators (RFC 8707, RFC 9068), opaque
// access tokens, introspection (RFC 7662), revocation (RFC 7009) and DPoP
// (RFC 9449) when a token request carries a proof.
// Started by scripts/oidc-provider.sh; nothing here is our code's logic.
//
// Listens on OIDC_PROVIDER_PORT (default 20590) as issuer
// http://127.0.0.1:<port>, and on <port>+1 as a second, unrelated issuer
// with keys of its own (for wrong-issuer tests). Clients (all
// client_secret_basic, grant client_credentials, scopes read write):
//   app / app-secret         access tokens for resource api://orders or
//                            api://billing are JWTs (ES256, 5 min); without a
//                            resource, opaque tokens (5 min)
//   app-short / app-secret   the same, living 2 s
//   guard / guard-secret     the resource server, introspects
// Test controls (POST, on the first port):
//   /test/rotate   a new signing key signs from now on; the old one stays
//                  published (the provider is rebuilt with both, tokens kept)
//   /test/down     every other request is dropped (connection reset) ...
//   /test/up       ... until this
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PROVIDER_PORT || 20590);
const host = '127.0.0.1';

function key(type) {
  const { privateKey } = type === 'EC'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: randomUUID(), use: 'sig', alg: type === 'EC' ? 'ES256' : 'RS256' };
}

const resources = new Set(['api://orders', 'api://billing']);

function build(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [
      { client_id: 'app', client_secret: 'app-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'read write' },
      { client_id: 'app-short', client_secret: 'app-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'read write' },
      { client_id: 'guard', client_secret: 'guard-secret', grant_types: [], redirect_uris: [], response_types: [] },
    ],
    scopes: ['read', 'write'],
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      // RFC 9449: a token request with a DPoP proof gets a token bound to
      // its key (cnf.jkt in JWTs and in introspection); without one, a
      // bearer token as before.
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, resource, client) => {
          if (!resources.has(resource)) throw new Provider.errors.InvalidTarget();
          return {
            scope: 'read write',
            audience: resource,
            accessTokenTTL: client.clientId === 'app-short' ? 2 : 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token, client) => (client.clientId === 'app-short' ? 2 : 300),
    },
  });
  provider.proxy = false;
  return provider;
}

const issuer = `http://${host}:${port}`;
let keys = [key('EC'), key('RSA')];
let provider = build(issuer, keys);
let down = false;

http.createServer((req, res) => {
  if (req.method === 'POST' && req.url.startsWith('/test/')) {
    switch (req.url) {
      case '/test/rotate':
        // Tokens live in the adapter, which provider instances share.
        keys = [key('EC'), ...keys];
        provider = build(issuer, keys);
        break;
      case '/test/down':
        down = true;
        break;
      case '/test/up':
        down = false;
        break;
      default:
        res.writeHead(404).end();
        return;
    }
    res.writeHead(204).end();
    return;
  }
  if (down) {
    req.socket.destroy();
    return;
  }
  provider.callback()(req, res);
}).listen(port, host, () => console.log(`oidc-provider ${issuer}`));

const other = build(`http://${host}:${port + 1}`, [key('EC'), key('RSA')]);
other.listen(port + 1, host, () => console.log(`oidc-provider http://${host}:${port + 1}`));
