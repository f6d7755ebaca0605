"""A small, real GPU-backed inference server for bench/gpu-check.sh.

OpenAI-compatible `POST /v1/chat/completions` (non-streaming) and
`GET /health`. Each request runs one forward pass of a randomly initialised
transformer per output token (`max_tokens`, default 16) on the chosen
device, so GPU utilisation, power and energy follow the load. Nothing is
downloaded: the weights are random and the "text" is token ids.

    python bench/gpu_server.py --port 0 [--device cuda|cpu] [--d-model 2048 --layers 8]

Prints `GPU_SERVER_LISTENING http://127.0.0.1:PORT` once the model is on the
device and warmed up. `--device cpu --d-model 64 --layers 2` runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def build_model(device: str, d_model: int, layers: int, seq: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    layer = nn.TransformerEncoderLayer(d_model, nhead=max(1, d_model // 128),
                                       dim_feedforward=4 * d_model, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
    model = model.to(device=device, dtype=dtype).eval()
    x = torch.randn(1, seq, d_model, device=device, dtype=dtype)

    def step() -> float:
        """One forward pass; the result's sum forces the device to finish it."""
        with torch.inference_mode():
            return float(model(x).float().sum().item())

    for _ in range(3):  # warm up: kernels chosen, memory allocated
        step()
    return step


def make_handler(step, model_name: str, lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": model_name,
                                                              "object": "model"}]})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": "not found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                tokens = max(1, min(int(body.get("max_tokens") or 16), 512))
                prompt = sum(len(str(m.get("content", "")).split())
                             for m in body.get("messages", []))
            except (ValueError, TypeError, AttributeError) as exc:
                self._json(400, {"error": {"message": f"bad request: {exc}"}})
                return
            for _ in range(tokens):
                with lock:  # one forward pass at a time, like one decode batch
                    step()
            self._json(200, {
                "id": f"chatcmpl-{time.monotonic_ns()}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model") or model_name,
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant",
                                         "content": " ".join(["tok"] * tokens)}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": tokens,
                          "total_tokens": prompt + tokens}})

        def _json(self, status: int, doc: dict) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--d-model", type=int, default=2048)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--seq", type=int, default=256, help="tokens per forward pass")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_server: PyTorch is not installed (pip install torch)", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_server: CUDA is not available to PyTorch", file=sys.stderr)
        return 2
    step = build_model(args.device, args.d_model, args.layers, args.seq)
    httpd = ThreadingHTTPServer((args.host, args.port),
                                make_handler(step, "gpu-check-random", threading.Lock()))
    httpd.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    print(f"GPU_SERVER_LISTENING http://{args.host}:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
