// An MCP server and an MCP client made with the official TypeScript SDK
// (@modelcontextprotocol/sdk), for the MCP end-to-end test
// (mcp_e2e_test.go): nothing here speaks OAuth except through the SDK.
//
//   node mcp.mjs server <port> <name>
//       a stateless Streamable HTTP MCP server on 127.0.0.1:<port>/mcp with
//       one tool, "echo", whose answer names the server
//   node mcp.mjs client
//       MCP_URL            the guarded MCP endpoint
//       MCP_OTHER_URL      a second guarded MCP endpoint (another resource)
//       MCP_USER, MCP_PASSWORD  the resource owner (basic_auth before
//                          /oauth2/authorize)
//       MCP_CLIENT_ID      a pre-registered client, or
//       MCP_CLIENT_METADATA_URL  a client ID metadata document URL, or
//                          neither: the SDK registers dynamically
//       MCP_REDIRECT_URI   the client's redirect URI (never listened on)
//       MCP_REVOKE_URL     the authorization server's revocation endpoint
//       MCP_RESOURCE_NAME  what the consent page must show of the resource
//   The client connects (the SDK discovers everything from the 401,
//   registers or presents its client ID, runs PKCE with resource), lists
//   and calls a tool, refreshes, checks that its token is refused by the
//   other server, revokes its tokens and checks the session stops. It
//   prints one JSON object: the results and the transcript of every HTTP
//   request (method, path, status).
import http from 'node:http'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { z } from 'zod'

const env = (k) => process.env[k] ?? ''

if (process.argv[2] === 'server') {
  const [port, name] = [Number(process.argv[3]), process.argv[4]]
  http.createServer(async (req, res) => {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') { res.writeHead(404).end(); return }
    // Stateless: a server and transport per request.
    const server = new McpServer({ name, version: '1.0.0' })
    server.registerTool('echo', { description: 'Echoes its text', inputSchema: { text: z.string() } },
      async ({ text }) => ({ content: [{ type: 'text', text: `${name}: ${text} (user ${req.headers['x-user'] ?? ''})` }] }))
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true })
    res.on('close', () => { transport.close(); server.close() })
    await server.connect(transport)
    let body = ''
    for await (const chunk of req) body += chunk
    await transport.handleRequest(req, res, body ? JSON.parse(body) : undefined)
  }).listen(port, '127.0.0.1', () => console.log(`listening ${port}`))
} else {
  await client()
}

async function client() {
  const transcript = []
  // Every request the SDK and the browser step make, in order.
  const logged = async (url, init) => {
    const res = await fetch(url, init)
    const u = new URL(typeof url === 'string' || url instanceof URL ? url : url.url)
    transcript.push(`${init?.method ?? 'GET'} ${u.origin}${u.pathname} ${res.status}`)
    return res
  }
  const redirectUri = env('MCP_REDIRECT_URI')
  const basic = 'Basic ' + Buffer.from(env('MCP_USER') + ':' + env('MCP_PASSWORD')).toString('base64')
  let clientInfo = env('MCP_CLIENT_ID') ? { client_id: env('MCP_CLIENT_ID') } : undefined
  let tokens, verifier, code, consentPage = '', logins = 0, loginsAllowed = 1

  // The provider only stores what the SDK hands it and plays the browser:
  // it signs in, approves the consent page and takes the code from the
  // redirect.
  const provider = {
    get redirectUrl() { return redirectUri },
    get clientMetadata() {
      return { client_name: 'MCP SDK e2e client', redirect_uris: [redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' }
    },
    clientMetadataUrl: env('MCP_CLIENT_METADATA_URL') || undefined,
    clientInformation: () => clientInfo,
    saveClientInformation: (info) => { clientInfo = info },
    tokens: () => tokens,
    saveTokens: (t) => { tokens = t },
    saveCodeVerifier: (v) => { verifier = v },
    codeVerifier: () => verifier,
    async redirectToAuthorization(url) {
      if (++logins > loginsAllowed) throw new Error('no further sign-in allowed')
      let res = await logged(url, { headers: { authorization: basic }, redirect: 'manual' })
      consentPage = await res.text()
      if (res.status !== 200) throw new Error(`consent page: ${res.status} ${consentPage}`)
      const form = new URLSearchParams()
      for (const m of consentPage.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
        const unescape = (s) => s.replace(/&#34;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')
        form.append(unescape(m[1]), unescape(m[2]))
      }
      form.set('decision', 'approve')
      res = await logged(url.origin + url.pathname, {
        method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, body: form, redirect: 'manual',
      })
      const location = new URL(res.headers.get('location'))
      code = location.searchParams.get('code')
      if (!code) throw new Error(`consent: ${res.status} ${location}`)
    },
  }

  const mcpURL = new URL(env('MCP_URL'))
  const connect = async () => {
    const transport = new StreamableHTTPClientTransport(mcpURL, { authProvider: provider, fetch: logged })
    const c = new Client({ name: 'mcp-e2e', version: '1.0.0' })
    try {
      await c.connect(transport)
    } catch (e) {
      if (!(e instanceof UnauthorizedError) || !code) throw e
      await transport.finishAuth(code) // the SDK redeems the code
      code = undefined
      await c.close()
      return connect()
    }
    return c
  }
  const out = { transcript }
  let c = await connect()
  out.tools = (await c.listTools()).tools.map((t) => t.name)
  out.call = (await c.callTool({ name: 'echo', arguments: { text: 'hello' } })).content[0].text
  out.consentShowsResource = consentPage.includes(env('MCP_RESOURCE_NAME') || mcpURL.href)
  out.consentShowsHost = consentPage.includes('metadata-document')
  out.clientID = clientInfo?.client_id
  const first = tokens

  // The SDK's auth() refreshes when it holds a refresh token.
  out.refresh = await auth(provider, { serverUrl: mcpURL, fetchFn: logged })
  out.refreshed = tokens.access_token !== first.access_token
  out.afterRefresh = (await c.callTool({ name: 'echo', arguments: { text: 'again' } })).content[0].text

  // The token for this server, at another server with another resource.
  const init = { method: 'POST', headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }) }
  let res = await logged(env('MCP_OTHER_URL'), init)
  out.otherStatus = res.status
  out.otherChallenge = res.headers.get('www-authenticate')

  // Revoking the tokens (RFC 7009) ends the session: no token passes, and
  // the provider signs in no more.
  for (const t of [tokens.refresh_token, tokens.access_token]) {
    res = await logged(env('MCP_REVOKE_URL'), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token: t, client_id: clientInfo.client_id }) })
    if (res.status !== 200) throw new Error(`revoke: ${res.status}`)
  }
  try {
    await c.callTool({ name: 'echo', arguments: { text: 'after revocation' } })
    out.afterRevoke = 'passed'
  } catch (e) {
    out.afterRevoke = String(e.message ?? e)
  }
  await c.close().catch(() => {})
  console.log(JSON.stringify(out))
}
