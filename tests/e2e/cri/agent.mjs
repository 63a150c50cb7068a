// agent.mjs -- the workload of the CRI tests' agent pod: an MCP client (the official SDK)
// that launches a real MCP server (server-everything) over stdio, as agents do.
//
//   node agent.mjs SHARED_DIR
//
// Runs as the container `agent` of a pod, with the host's /usr and the repository bind-mounted
// read-only, and SHARED_DIR (writable) to talk to the test on the host:
//   ready.json   written once initialize is done: {server_pid} (pid in the pod's namespace)
//   go.N         written by the test: run workload round N (1, 2, ...)
//   log.N.json   written here after round N: every request the client sent and its outcome
// The container is stopped by the test (StopPodSandbox), never by itself.

import fs from 'node:fs';
import path from 'node:path';

import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';

import { ClientLog, EVERYTHING, newClient, requestUnknownMethod, sleep } from '../lib.mjs';

const shared = process.argv[2];
const write = (name, value) => {
	const tmp = path.join(shared, `.${name}.tmp`);
	fs.writeFileSync(tmp, JSON.stringify(value));
	fs.renameSync(tmp, path.join(shared, name));
};

const transport = new StdioClientTransport({
	command: process.execPath,
	args: [EVERYTHING, 'stdio'],
	stderr: 'ignore',
	env: getDefaultEnvironment(),
});
const log = new ClientLog(transport);
const client = newClient('cri-agent');
await client.connect(transport);
write('ready.json', { server_pid: transport.pid });

for (let round = 1; ; round++) {
	while (!fs.existsSync(path.join(shared, `go.${round}`))) await sleep(20);
	const from = log.requests.length;
	await client.listTools();
	for (let i = 0; i < 3; i++) await client.callTool({ name: 'echo', arguments: { message: `round ${round} call ${i}` } });
	await client.callTool({ name: 'get-sum', arguments: { a: round, b: 2 } });
	await client.callTool({ name: `no-such-tool-${round}`, arguments: {} });
	await requestUnknownMethod(client);
	const requests = log.requests.slice(from).map(({ id, method, tool, params, outcome, error_code }) => ({ id, method, tool, params, outcome, error_code }));
	write(`log.${round}.json`, requests);
}
