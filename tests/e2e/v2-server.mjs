// v2-server.mjs -- a small stdio MCP server on the v2 SDK (@modelcontextprotocol/server 2.4.0),
// which speaks protocol revision 2026-07-28 (no initialize, identity in every request's and
// result's _meta, multi-round-trip requests, tasks) and, to older clients, 2025-11-25.
// Run: node v2-server.mjs; stdin/stdout are the MCP channel.
//
// Tools:
//   ok        {text}              -> "ok: <text>"
//   fail      {}                  -> isError: true
//   slow      {ms, steps, loud?}  works for ms in steps; sends notifications/progress after each
//                                 of the first `loud` steps (all by default) when the request
//                                 carries a progressToken
//   confirm   {action}            asks the client for a confirmation (input_required) first:
//                                 two exchanges for one call
//   research  {ms}                answers with a task (resultType "task"); tasks/get says it is
//                                 working until ms have passed, then completed
// V2_EXTRA_TOOLS=N adds N more tools (a long tools/list).
import { McpServer, fromJsonSchema, inputRequired, acceptedContent } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';

const schema = (properties, required = []) => fromJsonSchema({ type: 'object', properties, required });
const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tasks = new Map(); // taskId -> {createdAt, done}: one process, one connection

function makeServer() {
	const server = new McpServer({ name: 'v2-test-server', version: '2.4.0-test' },
		{ capabilities: { extensions: { 'io.modelcontextprotocol/tasks': {} } } });

	server.registerTool('ok', { description: 'Answers at once', inputSchema: schema({ text: { type: 'string' } }) },
		async ({ text: t }) => text(`ok: ${t}`));

	server.registerTool('fail', { description: 'A tool failure (isError)', inputSchema: schema({}) },
		async () => ({ ...text('failed on purpose'), isError: true }));

	server.registerTool('slow', {
		description: 'Works for ms, reporting progress',
		inputSchema: schema({ ms: { type: 'number' }, steps: { type: 'number' }, loud: { type: 'number' } }, ['ms', 'steps']),
	}, async ({ ms, steps, loud = steps }, ctx) => {
		const token = ctx.mcpReq._meta?.progressToken;
		for (let i = 1; i <= steps; i++) {
			await sleep(ms / steps);
			if (token !== undefined && i <= loud)
				await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps } });
		}
		return text(`worked ${ms} ms`);
	});

	server.registerTool('confirm', {
		description: 'Asks for a confirmation first (multi round-trip)',
		inputSchema: schema({ action: { type: 'string' } }, ['action']),
	}, async ({ action }, ctx) => {
		if (acceptedContent(ctx.mcpReq.inputResponses, 'confirm')?.confirm !== true) {
			return inputRequired({
				inputRequests: {
					confirm: inputRequired.elicit({
						message: `Really ${action}?`,
						requestedSchema: { type: 'object', properties: { confirm: { type: 'boolean' } }, required: ['confirm'] },
					}),
				},
				requestState: `confirm:${action}`,
			});
		}
		return text(`done: ${action}`);
	});

	server.registerTool('research', { description: 'Runs as a task', inputSchema: schema({ ms: { type: 'number' } }, ['ms']) },
		async ({ ms }) => {
			const now = new Date().toISOString();
			const taskId = `task-${process.pid}-${tasks.size + 1}`;
			tasks.set(taskId, { createdAt: now, done: Date.now() + ms });
			return { resultType: 'task', taskId, status: 'working', createdAt: now, lastUpdatedAt: now, ttlMs: 60000, pollIntervalMs: 50 };
		});

	// tasks/get of the tasks extension: the SDK routes it to a handler registered with a schema.
	server.server.setRequestHandler('tasks/get', { params: fromJsonSchema({ type: 'object', properties: { taskId: { type: 'string' } }, required: ['taskId'] }) },
		async ({ taskId }) => {
			const t = tasks.get(taskId);
			if (!t) throw new Error(`no task ${taskId}`);
			const base = { taskId, createdAt: t.createdAt, lastUpdatedAt: new Date().toISOString(), ttlMs: 60000, pollIntervalMs: 50 };
			return Date.now() < t.done ? { ...base, status: 'working' } : { ...base, status: 'completed', result: text('research done') };
		});

	for (let i = 0; i < Number(process.env.V2_EXTRA_TOOLS ?? 0); i++) {
		const name = `extra-${String(i).padStart(5, '0')}`;
		server.registerTool(name, { description: `Extra tool number ${i}, for a long tools/list`, inputSchema: schema({ n: { type: 'number' } }, ['n']) },
			async () => text(name));
	}
	return server;
}

serveStdio(makeServer);
