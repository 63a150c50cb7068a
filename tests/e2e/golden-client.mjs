// golden-client.mjs -- the fixed workload recorded into tests/data/golden.msd (scripts/record-golden.sh).
//
// Starts server-everything with the SDK client (socketpairs), prints "SERVER_PID <pid>" on stdout
// before anything is said on the channel, waits for SIGUSR1 (the recorder is attached), then runs
// one of each thing the output has to render, in a fixed order with pauses so that nothing
// overlaps: initialize (the client declares roots but cannot answer roots/list: the server's own
// request gets -32601 and the server writes a line on stderr), tools/list, two ok calls, an
// isError result, a -32601 for an unknown method, a call with progress notifications, and a
// clean shutdown.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResultSchema } from '@modelcontextprotocol/sdk/types.js';

import { EVERYTHING, TESTS, sleep, deadline } from './lib.mjs';

const transport = new StdioClientTransport({
	command: process.execPath, args: [EVERYTHING, 'stdio'], cwd: TESTS, stderr: 'pipe', // a pipe: mcpsonde captures stderr on pipes, not /dev/null
	env: getDefaultEnvironment(),
});
const client = new Client({ name: 'mcpsonde-golden', version: '1.0.0' }, { capabilities: { roots: {} } });
let go;
const attached = new Promise((r) => { go = r; });
process.on('SIGUSR1', () => go());

await transport.start();
transport.stderr.resume();
transport.start = async () => {}; // connect() starts it again: the child already runs
process.stdout.write(`SERVER_PID ${transport.pid}\n`);
try {
	await Promise.race([attached, deadline(30000)]);
	await client.connect(transport);
	await sleep(800); // the server asks for roots 350 ms after initialized
	await client.listTools();
	await sleep(100);
	await client.callTool({ name: 'echo', arguments: { message: 'golden' } });
	await sleep(100);
	await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } });
	await sleep(100);
	await client.callTool({ name: 'no-such-tool', arguments: {} });
	await sleep(100);
	await client.request({ method: 'no/such-method', params: {} }, ResultSchema).catch(() => {});
	await sleep(100);
	await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 2 } },
		undefined, { onprogress: () => {} });
	await sleep(100);
} finally {
	await client.close();
}
