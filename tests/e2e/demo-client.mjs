// demo-client.mjs -- the client side of `make demo` (scripts/demo.sh).
//
// Starts server-everything with the SDK (socketpairs), initializes, prints "SERVER_PID <pid>" on
// stdout, then waits for SIGUSR1 (mcpsonde is attached) before a few calls with short pauses.
// What it does goes to stderr, so that it can be read beside mcpsonde's output.
import { launchSocketpair, sleep, deadline } from './lib.mjs';

const say = (s) => process.stderr.write(`client: ${s}\n`);
const srv = await launchSocketpair();
let go;
const started = new Promise((r) => { go = r; });
process.on('SIGUSR1', () => go());
try {
	await srv.connect();
	process.stdout.write(`SERVER_PID ${srv.pid}\n`);
	await Promise.race([started, deadline(30000)]);
	await sleep(300);

	say('tools/call echo {message}');
	await srv.client.callTool({ name: 'echo', arguments: { message: 'hello from the demo' } });
	await sleep(500);
	say('tools/call get-sum {a, b}');
	await srv.client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } });
	await sleep(500);
	say('tools/call no-such-tool (the server answers isError)');
	await srv.client.callTool({ name: 'no-such-tool', arguments: {} });
	await sleep(500);
	say('tools/call trigger-long-running-operation {duration: 3, steps: 3}, with progress');
	await srv.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 3, steps: 3 } }, undefined,
		{ onprogress: (p) => say(`  progress ${p.progress}/${p.total}`) });
	await sleep(500);
	say('tools/call echo again');
	await srv.client.callTool({ name: 'echo', arguments: { message: 'bye' } });
	await sleep(500);
} finally {
	await srv.close();
}
