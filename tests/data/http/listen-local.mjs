// listen-local.mjs -- preloaded (node --import) into a test server that calls listen(PORT):
// binds it to 127.0.0.1 instead of every interface, and tells the parent (IPC) the port the
// OS picked for PORT=0, so that recordings never use a fixed port nor listen beyond loopback.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
	if (typeof args[0] === 'number' || typeof args[0] === 'string') {
		const cb = args.find((a) => typeof a === 'function');
		args = [Number(args[0]), '127.0.0.1', ...(cb ? [cb] : [])];
	}
	this.once('listening', () => process.send?.({ port: this.address().port }));
	return listen.apply(this, args);
};
