"""The embedded runtime's child process: llama.cpp serving one GGUF model over the
OpenAI protocol on 127.0.0.1, behind a bearer token.

Started by the supervisor as `switchboard --serve-model MODEL …` (frozen builds) or
`python -m app --serve-model MODEL …`. It binds its port first and says which on
stdout (`SWITCHBOARD_PORT n`), loads the model (llama.cpp prints one `.` per percent to
stderr, which the supervisor turns into progress), then says `SWITCHBOARD_READY` and
serves. It exits when its parent does (its stdin closes), so a killed app leaves no
runtime holding VRAM.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from typing import cast

TOKEN_ENV = "SWITCHBOARD_RUNTIME_TOKEN"  # never on the command line: others can read argv
PORT_LINE = "SWITCHBOARD_PORT"
READY_LINE = "SWITCHBOARD_READY"
LLAMA_SPLIT_MODE_LAYER = 1


def add_arguments(p: argparse._ActionsContainer) -> None:
    """The child's flags; hidden from `--help`, since only the supervisor passes them."""
    hidden = argparse.SUPPRESS
    p.add_argument("--alias", default="local", help=hidden)
    p.add_argument("--n-ctx", type=int, default=4096, help=hidden)
    p.add_argument("--n-gpu-layers", type=int, default=0, help=hidden)
    p.add_argument("--tensor-split", default="", help=hidden)  # comma-separated proportions
    p.add_argument("--main-gpu", type=int, default=0, help=hidden)
    p.add_argument("--flash-attn", action="store_true", help=hidden)
    p.add_argument("--n-threads", type=int, default=0, help=hidden)  # 0: half the cores


def _exit_with_parent() -> None:
    """Exit when the parent closes our stdin: it ended, however it ended."""

    def watch() -> None:
        # The raw descriptor, not sys.stdin.buffer: a thread blocked in a buffered read
        # holds its lock, and then the interpreter can't shut down (a model that fails to
        # load left the child hanging until the parent closed stdin, then aborting).
        try:
            while os.read(0, 4096):  # stdin
                pass
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def cache_token_pieces() -> None:
    """Make detokenising a growing answer cost per new token, not per answer length.

    For every streamed token llama-cpp-python (0.3.x) detokenises the whole answer so
    far (`Llama._create_completion`), one ctypes call per token: the cost of each token
    grows with the answer, quadratic in all. A token's bytes never change, so they are
    looked up once and joined; the result is byte-for-byte what `LlamaModel.detokenize`
    returns (the pieces concatenated, minus a BOS's leading space).
    """
    from llama_cpp._internals import LlamaModel

    def detokenize(self: LlamaModel, tokens: list[int], special: bool = False) -> bytes:
        pieces: dict[tuple[int, bool], bytes] = self.__dict__.setdefault("_pieces", {})
        for token in set(tokens).difference(t for t, s in pieces if s == special):
            pieces[(token, special)] = _piece(self, token, special)
        output = b"".join([pieces[(t, special)] for t in tokens])
        if tokens and tokens[0] == self.token_bos() and output[:1] == b" ":
            return output[1:]
        return output

    LlamaModel.detokenize = detokenize  # type: ignore[method-assign]


def read_ahead_generation() -> None:
    """Let generation run ahead of sending, on its own thread.

    llama_cpp.server pulls each chunk with a fresh thread-pool hop and only then sends
    it, so the model waits while the event loop sends, and the per-token HTTP/SSE cost
    adds to the per-token model cost. Here one thread produces chunks into a queue as
    fast as the model makes them while the loop sends: the two costs overlap.
    """
    import asyncio

    import anyio
    import llama_cpp.server.app as server_app

    done = object()

    async def iterate_ahead[T](iterator: Iterable[T]) -> AsyncIterator[T]:
        chunks: asyncio.Queue[object] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def produce() -> None:
            try:
                for chunk in iterator:
                    loop.call_soon_threadsafe(chunks.put_nowait, chunk)
                    if stop.is_set():
                        break
            except BaseException as e:  # noqa: BLE001 — re-raised on the loop below
                loop.call_soon_threadsafe(chunks.put_nowait, _Raised(e))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()  # on this thread, where the generator ran
                loop.call_soon_threadsafe(chunks.put_nowait, done)

        producer = threading.Thread(target=produce, name="generate", daemon=True)
        producer.start()
        try:
            while (chunk := await chunks.get()) is not done:
                if isinstance(chunk, _Raised):
                    raise chunk.error
                yield cast(T, chunk)
        finally:
            stop.set()
            # The model lock is released when our caller returns: the generating thread
            # must be out of llama.cpp by then, even when the client went away.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(producer.join)

    server_app.iterate_in_threadpool = iterate_ahead


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _piece(model: object, token: int, special: bool) -> bytes:
    import ctypes

    import llama_cpp

    buffer = (ctypes.c_char * 64)()
    n = llama_cpp.llama_token_to_piece(model.vocab, llama_cpp.llama_token(token),  # type: ignore[attr-defined]
                                       buffer, 64, 0, special)
    if n < 0:  # a longer piece than the buffer: ask again with the size it needs
        buffer = (ctypes.c_char * -n)()
        n = llama_cpp.llama_token_to_piece(model.vocab, llama_cpp.llama_token(token),  # type: ignore[attr-defined]
                                           buffer, -n, 0, special)
    return ctypes.string_at(buffer, n)


def serve(model: str, args: argparse.Namespace) -> int:
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        print(f"serve-model: {TOKEN_ENV} is not set", file=sys.stderr)
        return 2
    _exit_with_parent()

    # Imported here: the tray app itself never needs the server stack.
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # pydantic-settings fills unset fields from same-named environment variables
    # (MODEL, N_CTX, VERBOSE, CONFIG_FILE…): none of the user's may leak into ours.
    for name in (*ModelSettings.model_fields, *ServerSettings.model_fields, "config_file"):
        os.environ.pop(name.upper(), None)

    cache_token_pieces()
    read_ahead_generation()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # Listening from now on: a request sent the moment we say READY waits in the backlog
    # until uvicorn accepts it, instead of being refused.
    sock.listen(128)
    port = sock.getsockname()[1]
    print(f"{PORT_LINE} {port}", flush=True)

    split = [float(x) for x in args.tensor_split.split(",") if x] or None
    model_settings = ModelSettings(
        model=model,
        model_alias=args.alias,
        n_ctx=args.n_ctx,
        n_gpu_layers=args.n_gpu_layers,
        split_mode=LLAMA_SPLIT_MODE_LAYER,
        main_gpu=args.main_gpu,
        tensor_split=split,
        flash_attn=args.flash_attn,
        n_threads=args.n_threads or max(1, (os.cpu_count() or 2) // 2),
        logits_all=False,  # the server's default computes logits for every prompt token
        verbose=True,  # the load progress dots and errors go to stderr, for the supervisor
    )
    # interrupt_requests off: a second request waits instead of cutting a running stream.
    server_settings = ServerSettings(host="127.0.0.1", port=port, api_key=token,
                                     interrupt_requests=False)
    app = create_app(server_settings=server_settings, model_settings=[model_settings])
    print(READY_LINE, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])
    return 0
