// Runs the authorization code flow (PKCE, RFC 9207 iss check) and a
// refresh with panva's oauth4webapi against a caddy-oauth2 issuer, for a
// client registered beforehand with plain HTTP (oauth4webapi has no
// registration helper). The consent page is approved as a browser would
// post its form. Prints {"access_token", "refresh_token", "refreshed"}.
//
//   node flow.mjs   with FLOW_ISSUER, FLOW_CLIENT_ID, FLOW_CLIENT_SECRET
//                   (empty: a public client), FLOW_REDIRECT_URI, FLOW_SCOPE,
//                   FLOW_USER, FLOW_PASSWORD
import * as oauth from 'oauth4webapi'

const env = (k) => process.env[k] ?? ''
const issuer = new URL(env('FLOW_ISSUER'))
const insecure = { [oauth.allowInsecureRequests]: true } // the tests serve plain http on 127.0.0.1
const as = await oauth.processDiscoveryResponse(issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
const client = { client_id: env('FLOW_CLIENT_ID') }
const clientAuth = env('FLOW_CLIENT_SECRET') ? oauth.ClientSecretBasic(env('FLOW_CLIENT_SECRET')) : oauth.None()
const redirectUri = env('FLOW_REDIRECT_URI')

const verifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()
const url = new URL(as.authorization_endpoint)
url.search = new URLSearchParams({
  response_type: 'code', client_id: client.client_id, redirect_uri: redirectUri, scope: env('FLOW_SCOPE'), state,
  code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
}).toString()

const basic = 'Basic ' + Buffer.from(env('FLOW_USER') + ':' + env('FLOW_PASSWORD')).toString('base64')
let res = await fetch(url, { headers: { authorization: basic }, redirect: 'manual' })
const page = await res.text()
if (res.status !== 200 || !page.includes('registered itself')) throw new Error(`consent page: ${res.status} ${page}`)
const form = new URLSearchParams()
for (const m of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
  const unescape = (s) => s.replace(/&#34;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
  form.set(unescape(m[1]), unescape(m[2]))
}
form.set('decision', 'approve')
res = await fetch(url.origin + url.pathname, {
  method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: form, redirect: 'manual',
})
const location = res.headers.get('location')
if (!location) throw new Error(`consent: ${res.status} ${await res.text()}`)

const params = oauth.validateAuthResponse(as, client, new URL(location), state)
const tokens = await oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, redirectUri, verifier, insecure))
const refreshed = await oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, insecure))
console.log(JSON.stringify({ access_token: tokens.access_token, refresh_token: tokens.refresh_token, refreshed: refreshed.access_token }))
