// Runs a FAPI 2.0 flow with panva's oauth4webapi against a caddy-oauth2
// issuer: a pushed authorization request (RFC 9126) with PKCE, the client
// authenticated with private_key_jwt (RFC 7523) at the PAR and token
// endpoints, DPoP-bound tokens (RFC 9449), a call to an API behind
// oauth2_guard with DPoP, a refresh with DPoP and a call with the
// refreshed token. All through oauth4webapi's own functions; only the
// resource owner's sign-in (basic_auth before /oauth2/authorize) is a
// plain fetch, as a browser would send it. Prints {"access_token",
// "refreshed", "token_type", "refreshed_token_type", "api", "api_refreshed"}.
//
//   node fapi2.mjs   with FLOW_ISSUER, FLOW_CLIENT_ID, FLOW_CLIENT_KEY (a
//                    private JWK file, ES256), FLOW_REDIRECT_URI,
//                    FLOW_SCOPE, FLOW_USER, FLOW_PASSWORD, FLOW_API (a URL
//                    behind oauth2_guard), FLOW_DPOP (1: use DPoP)
import { readFileSync } from 'node:fs'
import * as oauth from 'oauth4webapi'

const env = (k) => process.env[k] ?? ''
const issuer = new URL(env('FLOW_ISSUER'))
const insecure = { [oauth.allowInsecureRequests]: true } // the tests serve plain http on 127.0.0.1
const as = await oauth.processDiscoveryResponse(issuer,
  await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
if (!as.pushed_authorization_request_endpoint) throw new Error('no pushed_authorization_request_endpoint in the metadata')
const client = { client_id: env('FLOW_CLIENT_ID') }

const jwk = JSON.parse(readFileSync(env('FLOW_CLIENT_KEY'), 'utf8'))
const kid = jwk.kid
delete jwk.kid
const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
const clientAuth = oauth.PrivateKeyJwt({ key, kid })

let DPoP
if (env('FLOW_DPOP') === '1') {
  DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
}
const opts = { ...insecure, DPoP }

// A DPoP nonce challenge (RFC 9449 §8) is answered by retrying once; the
// handle remembers the nonce.
async function retryNonce(fn) {
  try {
    return await fn()
  } catch (err) {
    if (DPoP && oauth.isDPoPNonceError(err)) return await fn()
    throw err
  }
}

const redirectUri = env('FLOW_REDIRECT_URI')
const verifier = oauth.generateRandomCodeVerifier()
const state = oauth.generateRandomState()
const par = await retryNonce(async () => oauth.processPushedAuthorizationResponse(as, client,
  await oauth.pushedAuthorizationRequest(as, client, clientAuth, {
    response_type: 'code', redirect_uri: redirectUri, scope: env('FLOW_SCOPE'), state,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  }, opts)))

const url = new URL(as.authorization_endpoint)
url.search = new URLSearchParams({ client_id: client.client_id, request_uri: par.request_uri }).toString()
const basic = 'Basic ' + Buffer.from(env('FLOW_USER') + ':' + env('FLOW_PASSWORD')).toString('base64')
const res = await fetch(url, { headers: { authorization: basic }, redirect: 'manual' })
const location = res.headers.get('location')
if (!location) throw new Error(`authorize: ${res.status} ${await res.text()}`)

const params = oauth.validateAuthResponse(as, client, new URL(location), state)
const tokens = await retryNonce(async () => oauth.processAuthorizationCodeResponse(as, client,
  await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, redirectUri, verifier, opts)))

async function callAPI(token) {
  const r = await retryNonce(async () =>
    oauth.protectedResourceRequest(token, 'GET', new URL(env('FLOW_API')), new Headers(), null, opts))
  return { status: r.status, body: await r.text() }
}
const api = await callAPI(tokens.access_token)
const refreshed = await retryNonce(async () => oauth.processRefreshTokenResponse(as, client,
  await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, opts)))
const apiRefreshed = await callAPI(refreshed.access_token)
console.log(JSON.stringify({
  access_token: tokens.access_token, token_type: tokens.token_type, refresh_token: tokens.refresh_token,
  refreshed: refreshed.access_token, refreshed_token_type: refreshed.token_type, api, api_refreshed: apiRefreshed,
}))
