// http-client.mjs -- an MCP client process (the official SDK 1.32.2, StreamableHTTPClientTransport)
// for the tests that observe the client side: node http-client.mjs URL LOGFILE
//
// Prints "READY" and waits for a line on stdin (mcpsonde attaches meanwhile), then connects,
// makes its calls, ends the session (DELETE), and writes LOGFILE: every request it made with its
// outcome and round trip, as lib.mjs's ClientLog keeps them. Not on stdout: mcpsonde reads a
// tracked process's stdout as a stdio channel, and this log looks like JSON-RPC. HEADERS (JSON) adds
// headers to every HTTP request, as an agent sends its credentials.
import fs from 'node:fs';
import readline from 'node:readline';

import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EmptyResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { ClientLog, newClient } from './lib.mjs';

const url = new URL(process.argv[2]);
const headers = JSON.parse(process.env.HEADERS ?? '{}');
console.log('READY');
await new Promise((r) => readline.createInterface({ input: process.stdin }).once('line', r));

const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers } });
const log = new ClientLog(transport);
const client = newClient('mcpsonde-e2e-http-client');
await client.connect(transport);
await client.listTools();
await client.callTool({ name: 'echo', arguments: { message: 'from the client side' } });
await client.callTool({ name: 'get-sum', arguments: { a: 20, b: 22 } });
await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, undefined, { onprogress: () => {} });
await client.callTool({ name: 'no-such-tool', arguments: {} });
await client.request({ method: 'no/such-method', params: {} }, EmptyResultSchema).catch(() => {});
await transport.terminateSession();
await client.close();
const ids = (r) => ({ ...r, t_send: String(r.t_send), t_recv: String(r.t_recv), response: undefined, params: undefined });
fs.writeFileSync(process.argv[3], JSON.stringify(log.requests.map(ids)));
process.exit(0);
