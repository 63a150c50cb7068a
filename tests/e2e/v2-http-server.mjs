// v2-http-server.mjs -- an MCP server on the v2 SDK (@modelcontextprotocol/server 2.4.0) served
// over HTTP by its createMcpHandler: protocol revision 2026-07-28, stateless (no sessions, a
// response per POST, Mcp-Method and Mcp-Name headers checked against the body), with the
// SDK's stateless fallback for 2025-era clients. Listens on 127.0.0.1:0 at /mcp and tells its
// port on the IPC channel. MAX_BODY: the largest request body it reads (bytes). TOKEN: the
// bearer token a request must carry, else 401 (as a server behind OAuth answers).
//
// Tools: ok {text}; fail {} (isError); slow {ms, steps} with progress notifications;
// side {echoPort, httpPort}: this process talks to a TCP service (a Redis-like PING) and to
// an HTTP endpoint that is not MCP, as a server does with its database and upstream APIs.
import http from 'node:http';
import net from 'node:net';

import { McpServer, createMcpHandler, fromJsonSchema } from '@modelcontextprotocol/server';

const schema = (properties, required = []) => fromJsonSchema({ type: 'object', properties, required });
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ping(port) {
	return new Promise((resolve, reject) => {
		const s = net.connect(port, '127.0.0.1', () => s.write('*1\r\n$4\r\nPING\r\n'));
		s.once('data', (d) => { resolve(d.toString().trim()); s.end(); });
		s.once('error', reject);
	});
}

// Three health checks and a page on one keep-alive connection (an agent with one socket):
// enough exchanges for mcpsonde to set the connection aside (HTTP_CLASSIFY_EXCHANGES).
const upstreamAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(port, path) {
	return new Promise((resolve, reject) => {
		http.get({ host: '127.0.0.1', port, path, agent: upstreamAgent }, (res) => {
			let body = '';
			res.on('data', (d) => { body += d; });
			res.on('end', () => resolve({ status: res.statusCode, body }));
		}).on('error', reject);
	});
}

async function upstream(port) {
	let health;
	for (let i = 0; i < 3; i++) {
		const r = await get(port, '/health');
		health = `${r.status} ${JSON.parse(r.body).status}`;
	}
	return `${health} ${(await get(port, '/')).body.length}`;
}

function makeServer() {
	const server = new McpServer({ name: 'v2-http-test-server', version: '2.4.0-test' });
	server.registerTool('ok', { description: 'Answers at once', inputSchema: schema({ text: { type: 'string' } }) },
		async ({ text: t }) => text(`ok: ${t}`));
	server.registerTool('fail', { description: 'A tool failure (isError)', inputSchema: schema({}) },
		async () => ({ ...text('failed on purpose'), isError: true }));
	server.registerTool('slow', {
		description: 'Works for ms, reporting progress',
		inputSchema: schema({ ms: { type: 'number' }, steps: { type: 'number' } }, ['ms', 'steps']),
	}, async ({ ms, steps }, ctx) => {
		const token = ctx.mcpReq._meta?.progressToken;
		for (let i = 1; i <= steps; i++) {
			await sleep(ms / steps);
			if (token !== undefined)
				await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
		}
		return text(`worked ${ms} ms`);
	});
	server.registerTool('side', {
		description: 'Talks to a TCP service and a plain HTTP endpoint',
		inputSchema: schema({ echoPort: { type: 'number' }, httpPort: { type: 'number' } }, ['echoPort', 'httpPort']),
	}, async ({ echoPort, httpPort }) => text(`${await ping(echoPort)} ${await upstream(httpPort)}`));
	return server;
}

const handler = createMcpHandler(makeServer, {
	maxRequestBodySize: Number(process.env.MAX_BODY ?? 4 * 1024 * 1024),
	onerror: () => {},
});

// node:http <-> the handler's fetch face: the request read whole, the response streamed (an
// SSE body chunk by chunk, as it is produced).
const httpServer = http.createServer(async (req, res) => {
	if (process.env.TOKEN && req.headers.authorization !== `Bearer ${process.env.TOKEN}`) {
		res.writeHead(401, { 'www-authenticate': 'Bearer realm="mcp"', 'content-type': 'application/json' });
		return res.end('{"error":"invalid_token"}');
	}
	const chunks = [];
	for await (const c of req) chunks.push(c);
	const controller = new AbortController();
	res.on('close', () => controller.abort());
	const request = new Request(`http://${req.headers.host}${req.url}`, {
		method: req.method,
		headers: req.headers,
		body: req.method === 'GET' || req.method === 'HEAD' ? undefined : Buffer.concat(chunks),
		signal: controller.signal,
	});
	const response = await handler.fetch(request);
	res.writeHead(response.status, Object.fromEntries(response.headers));
	if (!response.body)
		return res.end();
	res.flushHeaders();
	try {
		for await (const chunk of response.body) res.write(chunk);
	} catch { /* the client went away */ }
	res.end();
});
httpServer.listen(0, '127.0.0.1', () => process.send?.({ port: httpServer.address().port }));
