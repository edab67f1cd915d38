#!/usr/bin/env python3
"""A relay server in Python asyncio: the kind of server a workshop attendee
brings to the conformance suite. It is the talk's server with its known
defects fixed (exact reads, cleanup on any error, a bound on what is queued
for a client that does not read, a graceful stop).

    python3 tests/byo/relay_server.py --port 1234
    build/tests/conformance --server "python3 tests/byo/relay_server.py"
"""
import argparse
import asyncio
import signal
import sys

MAX_PENDING = 4 * 1024 * 1024  # bytes queued for one client before we drop it
GRACE_SECONDS = 5


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description="frame relay server (asyncio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--max-frame", type=int, default=1024 * 1024)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--trace", action="store_true")  # accepted, not implemented
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (libuv) if installed")
    parser.add_argument("--unbounded", action="store_true",
                        help="the talk's behaviour: queue without limit for slow readers (benchmark)")
    return parser.parse_args()  # exits with status 2 on bad arguments


async def main(args):
    writers = set()

    def send(writer, frame):
        if not args.unbounded and writer.transport.get_write_buffer_size() + len(frame) > MAX_PENDING:
            log("client not reading: disconnected")
            writers.discard(writer)
            writer.transport.abort()
            return
        writer.write(frame)

    async def handle_connection(reader, writer):
        writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(4)  # never read(4): it may return less
                length = int.from_bytes(header, "big")
                if length > args.max_frame:
                    log(f"frame of {length} bytes exceeds the limit of {args.max_frame}")
                    break
                frame = header + await reader.readexactly(length)
                if args.echo:
                    send(writer, frame)
                    await writer.drain()
                else:
                    for other in list(writers):
                        if other is not writer:
                            send(other, frame)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # gone, maybe mid-frame: nothing of a partial frame is sent on
        finally:
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(handle_connection, args.host, args.port)
    host, port = server.sockets[0].getsockname()[:2]
    # Handle the signals before saying we are ready: a SIGTERM that comes
    # right after the "listening on" line must stop us gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening on {f'[{host}]' if ':' in host else host}:{port}", flush=True)
    await stop.wait()

    server.close()
    closing = list(writers)
    for writer in closing:
        writer.close()  # writes what is queued, then closes
    try:
        await asyncio.wait_for(
            asyncio.gather(*(w.wait_closed() for w in closing), return_exceptions=True),
            GRACE_SECONDS,
        )
    except asyncio.TimeoutError:
        log("gave up flushing to slow clients")


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.uvloop:
        import uvloop  # Debian: python3-uvloop

        uvloop.install()
    asyncio.run(main(arguments))
