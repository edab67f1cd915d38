// A peer for the benchmark: the same protocol on Node.js's `net` module
// (libuv underneath, like stage 03), written the way Node code usually is:
// socket.write() and move on. Nothing bounds what is queued for a client
// that stops reading -- the benchmark's slow-reader run shows what that costs.
'use strict';
const net = require('net');

const args = process.argv.slice(2);
const usage = 'usage: node node_server.js [--host ADDR] [--port N] [--max-frame BYTES] [--echo]\n';
if (args.includes('--help')) {
  process.stdout.write(usage);
  process.exit(0);
}
const known = new Set(['--host', '--port', '--max-frame', '--echo', '--trace']);
const unknown = args.find((a) => a.startsWith('--') && !known.has(a));
if (unknown) {
  process.stderr.write(`error: unknown option '${unknown}'\n${usage}`);
  process.exit(2);
}
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const host = option('--host', '127.0.0.1');
const port = Number(option('--port', '1234'));
const maxFrame = Number(option('--max-frame', String(1024 * 1024)));
const echo = args.includes('--echo');

const clients = new Set();

const server = net.createServer({ noDelay: true }, (socket) => {
  clients.add(socket);
  let buffered = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    while (buffered.length >= 4) {
      const n = buffered.readUInt32BE(0);
      if (n > maxFrame) { socket.destroy(); return; }
      if (buffered.length < 4 + n) break;
      const frame = buffered.subarray(0, 4 + n);
      buffered = buffered.subarray(4 + n);
      const targets = echo ? [socket] : [...clients].filter((c) => c !== socket);
      for (const c of targets) c.write(frame);
    }
  });
  const forget = () => clients.delete(socket);
  socket.on('close', forget);
  socket.on('error', forget);
});

server.listen(port, host, () => {
  const a = server.address();
  const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  process.stdout.write(`listening on ${shown}:${a.port}\n`);
});
const stop = () => { server.close(); for (const c of clients) c.end(); process.exit(0); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
