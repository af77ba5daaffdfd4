// Signs a user in with panva's openid-client, a certified OpenID Connect
// relying party, against a caddy-oauth2 issuer, and checks what the
// library itself validates: discovery, the code flow with PKCE, state and
// nonce, the ID token (signature against the JWKS, iss, aud, exp, nonce,
// at_hash), UserInfo, a refresh with a new ID token, prompt=none with and
// without consent and without a signed-in user, RP-initiated logout, and the
// refusals (a nonce mismatch, a tampered ID token, an unregistered
// post_logout_redirect_uri). The consent page is approved as a browser would
// post its form. Prints one JSON object of results; any failed expectation
// exits non-zero with a message.
//
//   node rp.mjs   with RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET (empty: a
//                 public client), RP_SKIP_CLIENT_ID (a public client with
//                 skip_consent), RP_REDIRECT_URI, RP_LOGOUT_URI (registered
//                 post_logout_redirect_uri), RP_SCOPE, RP_USER, RP_PASSWORD
import * as client from 'openid-client'

const env = (k) => process.env[k] ?? ''
const issuer = new URL(env('RP_ISSUER'))
const redirectUri = env('RP_REDIRECT_URI')
const scope = env('RP_SCOPE')
const basic = 'Basic ' + Buffer.from(env('RP_USER') + ':' + env('RP_PASSWORD')).toString('base64')
const out = {}

function fail(msg) { throw new Error(msg) }

// The tests serve plain http on 127.0.0.1; every ID token's signature is
// checked against the JWKS (non-repudiation checks), not only its claims.
const execute = [client.allowInsecureRequests, client.enableNonRepudiationChecks]
async function configure(id, secret, extra = {}) {
  const auth = secret ? client.ClientSecretBasic(secret) : client.None()
  return client.discovery(issuer, id, secret || undefined, auth, { execute, ...extra })
}

// authorize sends the user's browser to the authorization endpoint and
// returns the URL it is redirected to. signedIn false sends no credentials;
// a consent page is approved.
async function authorize(config, params, { signedIn = true } = {}) {
  const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope, ...params })
  const headers = signedIn ? { authorization: basic } : {}
  let res = await fetch(url, { headers, redirect: 'manual' })
  if (res.status === 200) {
    const page = await res.text()
    const form = new URLSearchParams()
    for (const m of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
      const unescape = (s) => s.replace(/&#34;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
      form.set(unescape(m[1]), unescape(m[2]))
    }
    form.set('decision', 'approve')
    res = await fetch(url.origin + url.pathname, {
      method: 'POST', headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, body: form, redirect: 'manual',
    })
  }
  const location = res.headers.get('location')
  if (!location) fail(`authorization: ${res.status} ${await res.text()}`)
  return new URL(location)
}

// login runs the code flow with PKCE, state and nonce and lets the
// library validate the ID token.
async function login(config, params = {}, checks = {}, opts = {}) {
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const cb = await authorize(config, {
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state, nonce, ...params,
  }, opts)
  return client.authorizationCodeGrant(config, cb, { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, ...checks })
}

// expectError runs f, which must throw; it returns the OAuth error code,
// or the library's error code and what it found wrong.
async function expectError(what, f) {
  try {
    await f()
  } catch (e) {
    if (process.env.RP_DEBUG) console.error(what, e)
    return e.error ?? `${e.code}: ${e.cause?.message ?? e.message}`
  }
  fail(`${what}: no error`)
}

const config = await configure(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'))
const meta = config.serverMetadata()
if (!meta.end_session_endpoint) fail('discovery has no end_session_endpoint')
out.issuer = meta.issuer

// The code flow; the library checks the ID token (signature, iss, aud, exp,
// iat, nonce, at_hash) before claims() returns.
const tokens = await login(config)
const claims = tokens.claims()
if (!claims) fail('no ID token')
out.sub = claims.sub
out.sid = claims.sid
out.email = claims.email ?? ''
out.access_token = tokens.access_token

const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
out.userinfo_sub = userinfo.sub
out.userinfo_email = userinfo.email ?? ''

const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
const rclaims = refreshed.claims()
if (!rclaims) fail('no ID token after the refresh')
if (rclaims.sub !== claims.sub) fail(`refresh changed sub: ${rclaims.sub}`)
if (refreshed.id_token === tokens.id_token) fail('the refresh returned the same ID token')
out.refreshed_access_token = refreshed.access_token

// max_age and prompt=login, with the sign-in time the site reports: the
// library checks that auth_time is there and recent enough.
const aged = await login(config, { max_age: '300' }, { maxAge: 300 })
if (typeof aged.claims()?.auth_time !== 'number') fail('max_age: no auth_time')
out.max_age = 'ok'
const relogin = await login(config, { prompt: 'login consent' }, { maxAge: 60 })
if (relogin.claims()?.sub !== claims.sub) fail('prompt=login: another subject')
out.prompt_login = 'ok'

// prompt=none: this client needs consent; without a signed-in user the
// server cannot ask either.
out.prompt_none_consent = await expectError('prompt=none, consent needed', () => login(config, { prompt: 'none' }))
out.prompt_none_no_session = await expectError('prompt=none, nobody signed in', () => login(config, { prompt: 'none' }, {}, { signedIn: false }))

// prompt=none with a client that skips consent: a code, silently.
const skip = await configure(env('RP_SKIP_CLIENT_ID'), '')
const silent = await login(skip, { prompt: 'none' })
if (silent.claims()?.sub !== claims.sub) fail('prompt=none: another subject')
out.silent_access_token = silent.access_token

// A nonce other than the one sent: the library must refuse the ID token.
out.nonce_mismatch = await expectError('nonce mismatch', () => login(config, {}, { expectedNonce: client.randomNonce() }))

// A tampered ID token: one byte of its signature changed on the way from
// the token endpoint.
const tamper = async (url, init) => {
  const res = await fetch(url, init)
  if (!String(url).endsWith('/oauth2/token')) return res
  const body = await res.json()
  if (body.id_token) {
    const [h, p, s] = body.id_token.split('.')
    body.id_token = [h, p, (s[0] === 'A' ? 'B' : 'A') + s.slice(1)].join('.')
  }
  return new Response(JSON.stringify(body), { status: res.status, headers: res.headers })
}
const tampered = await configure(env('RP_CLIENT_ID'), env('RP_CLIENT_SECRET'))
tampered[client.customFetch] = tamper
out.tampered = await expectError('tampered ID token', () => login(tampered))

// RP-initiated logout to an unregistered URI: refused, no redirect.
let u = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token, post_logout_redirect_uri: 'https://evil.example/cb', state: 'x' })
let res = await fetch(u, { redirect: 'manual' })
out.unregistered_logout_status = res.status
out.unregistered_logout_location = res.headers.get('location') ?? ''

// RP-initiated logout with the refreshed ID token: back to the registered
// URI with state, and the grant is gone.
const logoutState = client.randomState()
u = client.buildEndSessionUrl(config, { id_token_hint: refreshed.id_token, post_logout_redirect_uri: env('RP_LOGOUT_URI'), state: logoutState })
res = await fetch(u, { redirect: 'manual' })
const back = res.headers.get('location')
if (res.status !== 302 || !back) fail(`logout: ${res.status} ${await res.text()}`)
const bu = new URL(back)
if (bu.origin + bu.pathname !== env('RP_LOGOUT_URI') || bu.searchParams.get('state') !== logoutState) fail(`logout redirected to ${back}`)
out.logout = 'ok'
out.refresh_after_logout = await expectError('refresh after logout', () => client.refreshTokenGrant(config, refreshed.refresh_token))

console.log(JSON.stringify(out))
