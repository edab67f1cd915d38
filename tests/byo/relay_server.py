#!/usr/bin/env python3
"""A relay server in Python asyncio: the kind of server a workshop attendee
brings to the conformance suite. It is the talk's server with its known
defects fixed (exact reads, cleanup on any error, write() paired with
drain() so a slow reader slows its senders down, a stalled reader cut after
a timeout, a graceful stop that delivers what was queued).

    python3 tests/byo/relay_server.py --port 1234
    build/tests/conformance --server "python3 tests/byo/relay_server.py"
"""
import argparse
import asyncio
import signal
import sys

GRACE_SECONDS = 5


def log(message):
    print(message, file=sys.stderr, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description="frame relay server (asyncio)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--max-frame", type=int, default=1024 * 1024)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--max-pending", type=int, default=1024 * 1024,
                        help="bytes queued for a receiver before its senders wait")
    parser.add_argument("--stall-timeout", type=float, default=5.0,
                        help="seconds a receiver may take no byte before it is cut")
    parser.add_argument("--trace", action="store_true")  # accepted, not implemented
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (libuv) if installed")
    parser.add_argument("--unbounded", action="store_true",
                        help="the talk's behaviour: write() without drain(), queue without limit")
    return parser.parse_args()  # exits with status 2 on bad arguments


async def main(args):
    writers = set()

    async def wait_for(receiver):
        """Backpressure: the sender's task waits (reading nothing) until the
        receiver drains -- and cuts it if it takes nothing for the timeout."""
        while receiver.transport.get_write_buffer_size() > args.max_pending // 2:
            before = receiver.transport.get_write_buffer_size()
            try:
                await asyncio.wait_for(receiver.drain(), args.stall_timeout)
                return
            except asyncio.TimeoutError:
                if receiver.transport.get_write_buffer_size() >= before:
                    log(f"stalled: took no byte for {args.stall_timeout} s, disconnected")
                    writers.discard(receiver)
                    receiver.transport.abort()
                    return
            except ConnectionError:
                return  # its own task reports it

    async def handle_connection(reader, writer):
        writers.add(writer)
        writer.transport.set_write_buffer_limits(high=args.max_pending, low=args.max_pending // 2)
        try:
            while True:
                header = await reader.readexactly(4)  # never read(4): it may return less
                length = int.from_bytes(header, "big")
                if length > args.max_frame:
                    log(f"frame of {length} bytes exceeds the limit of {args.max_frame}")
                    break
                frame = header + await reader.readexactly(length)
                receivers = [writer] if args.echo else [w for w in writers if w is not writer]
                for receiver in receivers:
                    if not receiver.transport.is_closing():
                        receiver.write(frame)
                if args.unbounded:
                    continue
                for receiver in receivers:
                    if receiver.transport.get_write_buffer_size() > args.max_pending:
                        await wait_for(receiver)
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
        log("output not flushed in time: cutting the slow clients")
        for writer in closing:
            writer.transport.abort()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.uvloop:
        import uvloop  # Debian: python3-uvloop

        uvloop.install()
    asyncio.run(main(arguments))
